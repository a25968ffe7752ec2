"""Running a sweep on Ray Tune: from a validated config to finished result tables.

`run` is the orchestration (checks, data, the experiment directory, the Tuner to the end, or a
dry run); `tune` is the adapter that makes a trial Ray Tune's function trainable and assembles
the Tuner; `cluster` connects to Ray and checks the cluster can run the sweep; `resume` decides
whether an experiment may be continued; the Tuner's callbacks are `recorder` (the Parquet
tables), `progress` (one console line per event) and `tracking` (MLflow).
"""
