"""Confidence intervals that resample lesions, not images.

Several images of one lesion are not independent: an image bootstrap would give intervals that
are too narrow. Every interval hamtune publishes draws whole lesions (with all their images).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
METHOD = "percentile bootstrap over test lesions (all images of a drawn lesion)"


def lesion_bootstrap(lesions: np.ndarray, statistic: Callable[[np.ndarray], float],
                     resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic(rows)` over resamples of whole lesions (drawn with replacement).

    `statistic` receives the row indices of one resample (a lesion drawn twice brings its rows
    twice) and returns a number; NaN resamples (a class absent from a draw) are left out.
    """
    codes, _ = pd.factorize(pd.Series(lesions))
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    with warnings.catch_warnings():  # a resample may lack a class; sklearn warns, the score is defined
        warnings.simplefilter("ignore")
        for i in range(resamples):
            values[i] = statistic(np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))]))
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


def score_interval(y_true: np.ndarray, y_pred: np.ndarray, lesions: np.ndarray,
                   score: Callable[[np.ndarray, np.ndarray], float], seed: int = 0) -> dict[str, float]:
    """`score(y_true, y_pred)` with its lesion-bootstrap interval, as {"value", "low", "high"}."""
    low, high = lesion_bootstrap(lesions, lambda rows: score(y_true[rows], y_pred[rows]), seed=seed)
    return {"value": float(score(y_true, y_pred)), "low": low, "high": high}
