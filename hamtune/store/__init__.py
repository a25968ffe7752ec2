"""Where a sweep's results live: the experiment directory and its Parquet result tables.

`experiment` is the directory (local path or object-store URI) with the sweep file, settings,
split and marker a resume and an analysis need; `tables` the typed `trials.parquet` (one row per
trial, sorted by the objective) and `epochs.parquet` (one row per trial-epoch), written atomically.
Below the data layer and everything that trains, so any of them can read or write results.
"""
