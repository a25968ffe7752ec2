"""Experiment tracking beyond hamtune's own tables: MLflow, through Ray Tune's logger callback.

Ray Tune already writes TensorBoard event files for every trial (`tensorboard --logdir
EXPERIMENT`); a sweep with `tracking: {mlflow: URI}` also logs each trial as an MLflow run: its
hyperparameters as parameters and every epoch's metrics at step = epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hamtune.errors import ConfigError

if TYPE_CHECKING:
    from hamtune.config import SweepConfig


def tracking_callbacks(sweep: SweepConfig) -> list[Any]:
    """The Ray Tune callbacks that log the sweep where `tracking` says (none by default).

    Called before anything is written, so a missing MLflow is one line, not failed trials.
    """
    if not sweep.tracking.mlflow:
        return []
    try:
        import mlflow  # noqa: F401  (Ray's callback imports it only when the sweep starts)
        from ray.air.integrations.mlflow import MLflowLoggerCallback
    except ImportError:
        raise ConfigError(
            f"{sweep.source}: tracking.mlflow needs MLflow, which is not installed: pip install 'hamtune[mlflow]'"
        ) from None
    return [MLflowLoggerCallback(tracking_uri=sweep.tracking.mlflow, experiment_name=sweep.name,
                                 tags={"hamtune.sweep": sweep.name})]
