"""Sweep files: YAML in, typed frozen config objects out, validated once at load.

`types` holds the objects and their vocabulary, `constraints` and `schema` what each key may be,
`parsing` the validation that reports every problem at once, `io` the YAML files and overrides.
The names every other package uses are re-exported here.
"""

from hamtune.config.io import OVERRIDES, load_sweep, to_dict, with_overrides
from hamtune.config.parsing import parse_point, parse_sweep
from hamtune.config.types import (
    AUGMENTATIONS,
    AUTO_AUGMENTATION,
    BACKENDS,
    PRECISION_POLICIES,
    SAMPLERS,
    SCRATCH,
    TRANSFER,
    DataConfig,
    FailuresConfig,
    FloatRange,
    IntRange,
    ModelResources,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SpaceConfig,
    SweepConfig,
    SyntheticConfig,
    TrackingConfig,
    TrainingConfig,
    TrialPoint,
    shown_params,
)

__all__ = [
    "AUGMENTATIONS", "AUTO_AUGMENTATION", "BACKENDS", "OVERRIDES", "PRECISION_POLICIES",
    "SAMPLERS", "SCRATCH", "TRANSFER", "DataConfig", "FailuresConfig", "FloatRange", "IntRange",
    "ModelResources", "ResourcesConfig", "SchedulerConfig", "SearchConfig", "SpaceConfig", "SweepConfig",
    "SyntheticConfig", "TrackingConfig", "TrainingConfig", "TrialPoint", "load_sweep", "parse_point", "parse_sweep",
    "shown_params", "to_dict", "with_overrides",
]
