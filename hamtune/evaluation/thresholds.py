"""A melanoma operating point: the decision threshold that reaches a requested sensitivity.

Argmax treats a missed melanoma like any other error. A screening tool wants a known
melanoma sensitivity (e.g. 0.90) and pays for it in specificity. The threshold is chosen on
out-of-fold predictions, never on test; test then says what it really reaches.
"""

from __future__ import annotations

import math

import numpy as np

from hamtune.errors import ConfigError
from hamtune.labels import LABEL_OF, MELANOMA

MELANOMA_LABEL = LABEL_OF[MELANOMA]


def check_sensitivity(sensitivity: float) -> None:
    if not 0.0 < sensitivity < 1.0:  # NaN included
        raise ConfigError(f"--mel-sensitivity must be in (0, 1), got {sensitivity}")


def sensitivity_threshold(scores: np.ndarray, positive: np.ndarray, sensitivity: float) -> float:
    """The highest threshold t whose rule `score >= t` finds at least `sensitivity` of the positives.

    With n positives that is the k-th highest positive score, k = ceil(sensitivity * n): a
    higher t would miss one more positive, a lower one would only cost specificity.
    """
    check_sensitivity(sensitivity)
    ranked = np.sort(scores[positive])[::-1]
    if not len(ranked):
        raise ConfigError("no melanoma among the held-out predictions: no threshold can be chosen")
    needed = math.ceil(sensitivity * len(ranked) - 1e-9)  # 0.9 * 10 is 9.000000000000002
    return float(ranked[needed - 1])


def decide(proba: np.ndarray, threshold: float, target: int = MELANOMA_LABEL) -> np.ndarray:
    """Class `target` wherever its probability reaches `threshold`, else the most likely other class."""
    others = proba.copy()
    others[:, target] = -np.inf
    return np.where(proba[:, target] >= threshold, target, others.argmax(axis=1))


def sensitivity(y_true: np.ndarray, y_pred: np.ndarray, target: int = MELANOMA_LABEL) -> float:
    """Share of true `target` images predicted `target` (NaN when there are none)."""
    positive = y_true == target
    return float((y_pred[positive] == target).mean()) if positive.any() else math.nan


def specificity(y_true: np.ndarray, y_pred: np.ndarray, target: int = MELANOMA_LABEL) -> float:
    """Share of the other images not predicted `target` (NaN when there are none)."""
    negative = y_true != target
    return float((y_pred[negative] != target).mean()) if negative.any() else math.nan
