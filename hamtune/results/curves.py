"""A trial's best score so far, epoch by epoch: what ASHA compares at a rung and what a trial's
result is at any budget.

Rung fidelity (`hamtune.results.fidelity`) reads it at each rung, and importance at a common
budget (`hamtune.results.importance`) at the epoch every compared trial reached.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def best_so_far(epochs: pd.DataFrame, metric: str, keys: Sequence[str] = ("trial_id",),
                maximize: bool = True) -> pd.DataFrame:
    """The scored rows of `epochs` in epoch order per trial (`keys` name one), with `metric`
    replaced by the trial's best up to and including that epoch."""
    rows = epochs.dropna(subset=[metric]).sort_values([*keys, "epoch"])
    grouped = rows.groupby(list(keys))[metric]
    return rows.assign(**{metric: grouped.cummax() if maximize else grouped.cummin()})
