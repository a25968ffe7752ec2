"""The names every package shares: result keys, table columns, hyperparameters, the objective.

A trial reports these keys, the tables store them as columns, the searcher, scheduler, analysis
and evaluation read them back. Each is written here once and imports nothing of hamtune, so any
layer can use it without reaching up into the layer that happens to produce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Objective:
    """What a sweep optimises: a validation metric and whether higher or lower is better."""

    name: str
    mode: Literal["max", "min"]

    @property
    def direction(self) -> str:
        """The same direction in Optuna's words."""
        return "maximize" if self.mode == "max" else "minimize"

    @property
    def best(self) -> str:
        """The key of the best value so far in a trial (what ASHA and Optuna compare)."""
        return f"best_{self.name}"


#: The sweep's objective: validation macro F1 over the seven classes, higher is better. Tables
#: are sorted by it, `--rank` and `--top` refer to it, and `evaluate` compares configurations by it.
OBJECTIVE = Objective("val_macro_f1", "max")
#: What ASHA and Optuna compare: the best `OBJECTIVE` so far, a trial's result in the tables.
#: Ray's OptunaSearch tells Optuna the metric of a trial's last report, and the last epoch of a
#: trial stopped by ASHA or patience is often not its best.
SEARCH_METRIC = OBJECTIVE.best

#: Hyperparameters a trial receives (the search space's keys), in table column order.
HYPERPARAMETERS: tuple[str, ...] = ("model", "learning_rate", "dropout", "unfreeze_depth", "class_weight_power")
#: The float hyperparameters (each a `FloatRange` in the space and a float column in the tables).
FLOAT_HYPERPARAMETERS: tuple[str, ...] = ("learning_rate", "dropout", "class_weight_power")

#: The result key under which a diverged trial reports why it stopped, with a NaN objective.
DIVERGED_KEY = "diverged"
#: Set on the report of a trial's last epoch when the trial itself ended (all epochs, or patience):
#: a trial whose last report lacks it was stopped by the scheduler (see `hamtune.search.searcher`).
FINISHED_KEY = "trial_finished"

#: The three parts of a split, in the order they are listed and written.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: The user attribute of an Optuna trial that holds its Ray trial id (`trial_id` in the tables).
RAY_TRIAL_ATTR = "ray_trial_id"
#: The user attribute of an Optuna trial seeded from an earlier sweep: "<source>#<trial_id>".
WARM_START_ATTR = "warm_start_from"
