"""The HAM10000 data layer: reading, checking, splitting, weighting, caching and feeding images."""
