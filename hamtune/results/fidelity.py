"""Rung fidelity: does an ASHA rung decide on signal or on noise?

ASHA stops trials at each rung by their best score so far. Whether that is a good decision
depends on how well a score at the rung predicts the trial's final best, which nothing in a sweep
reports: from scratch, one epoch's val macro F1 swings by 0.1. For each rung, this computes the
Spearman rank correlation between the trials' best-so-far score at the rung and their final best,
over the trials that were not stopped there (those that ran to the longest budget of the sweep),
so a user can see which grace period their models need. Near 1: the rung ranks trials as their
end does; near 0 or below: the rung decides on noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pandas as pd

from hamtune.results.curves import best_so_far

#: ASHA's rungs for a sweep run without a scheduler: what a grace period of 1 and a reduction
#: factor of 2 would have compared, to choose a grace period from a sweep that stopped nothing.
NO_SCHEDULER = {"grace_period": 1, "reduction_factor": 2.0}


def asha_rungs(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    """The epochs at which Ray Tune's ASHA compares trials (`ray/tune/schedulers/async_hyperband.py`)."""
    count = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) + 1)
    return [int(grace_period * reduction_factor**k) for k in range(count)]


def sweep_rungs(config: dict, epochs: pd.DataFrame) -> tuple[list[int], str]:
    """A sweep's rungs from its recorded config, and how they were chosen (for the table)."""
    scheduler = config.get("scheduler", {})
    if scheduler.get("type") == "asha":
        return (asha_rungs(int(scheduler["grace_period"]), float(scheduler["reduction_factor"]),
                           int(scheduler["max_epochs"])), "asha")
    return asha_rungs(NO_SCHEDULER["grace_period"], NO_SCHEDULER["reduction_factor"], int(epochs["epoch"].max())), "none"


def rung_fidelity(epochs: pd.DataFrame, metric: str, rungs: list[int], maximize: bool = True) -> pd.DataFrame:
    """One row per rung: its epoch, the trials compared, and Spearman's rho between their score at
    the rung (best so far, as ASHA compares) and their final best.

    Compared are the trials that reached the longest budget any trial of `epochs` reached; a rung
    at or past that budget is left out (there, the two scores are one). Rho is NaN with fewer than
    3 trials, or when every trial scored the same.
    """
    so_far = best_so_far(epochs, metric, maximize=maximize).rename(columns={metric: "_best"})
    budget = int(so_far["epoch"].max()) if len(so_far) else 0
    last = so_far.groupby("trial_id")["epoch"].max()
    ended = last.index[last == budget]
    final = so_far[so_far["trial_id"].isin(ended)].groupby("trial_id")["_best"].last()
    rows = []
    for rung in (r for r in rungs if r < budget):
        at = so_far[(so_far["epoch"] == rung) & so_far["trial_id"].isin(ended)].set_index("trial_id")["_best"]
        pair = pd.concat([at, final], axis=1, join="inner").to_numpy(dtype=float)
        rows.append({"rung": rung, "trials": len(pair), "spearman": spearman(pair[:, 0], pair[:, 1])})
    return pd.DataFrame(rows, columns=["rung", "trials", "spearman"])


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho with average ranks for ties (pandas'); NaN under 3 pairs or for a constant side."""
    x, y = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    if len(x) < 3 or x.nunique() == 1 or y.nunique() == 1:
        return math.nan
    return float(x.corr(y, method="spearman"))


def fidelity_table(epochs: pd.DataFrame | None, metadata: dict[str, dict[str, str]], metric: str,
                   maximize: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """`rung_fidelity` of every sweep in a merged epochs table, with a `sweep` column; and notes."""
    columns = ["sweep", "scheduler", "rung", "trials", "spearman"]
    if epochs is None or not len(epochs):
        return pd.DataFrame(columns=columns), []
    tables, notes = [], []
    for sweep, group in epochs.groupby("sweep", sort=False):
        config = json.loads(metadata.get(sweep, {}).get("config", "{}"))
        rungs, scheduler = sweep_rungs(config, group)
        table = rung_fidelity(group, metric, rungs, maximize)
        if table["trials"].lt(3).all():
            notes.append(f"{sweep}: rung fidelity needs 3 trials that ran to the end; "
                         f"{int(table['trials'].max()) if len(table) else 0} did")
        tables.append(table.assign(sweep=sweep, scheduler=scheduler))
    return pd.concat(tables, ignore_index=True)[columns], notes
