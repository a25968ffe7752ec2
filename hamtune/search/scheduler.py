"""The trial scheduler: ASHA on the epoch count, or none (every trial runs all its epochs).

ASHA compares trials at rungs of `grace_period * reduction_factor**k` epochs and stops the worst;
the grace period is derived by config validation so that no rung falls inside a transfer-mode
warm-up (see `hamtune.config.parsing`).
"""

from __future__ import annotations

from typing import Any

from hamtune.config import SchedulerConfig


def make_scheduler(scheduler: SchedulerConfig) -> Any:
    """Ray Tune's scheduler for the sweep's `scheduler` settings."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if scheduler.type == "asha":
        return ASHAScheduler(
            time_attr="training_iteration", max_t=scheduler.max_epochs,
            grace_period=scheduler.grace_period, reduction_factor=scheduler.reduction_factor,
        )
    return FIFOScheduler()
