"""Lesion-grouped, diagnosis-stratified folds of train+val for cross-validating configurations.

One lesion's images never sit on both sides of a fold (the leak that inflates HAM10000 scores),
and every fold keeps the class mix of the whole, as far as whole lesions allow. The test split
is never part of a fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamtune.data.split import lesion_folds
from hamtune.errors import ConfigError
from hamtune.labels import CLASSES

MIN_FOLDS = 2


def lesions_per_class(labels: np.ndarray, lesions: np.ndarray) -> pd.Series:
    """Distinct lesions of each class present (a lesion has one diagnosis in HAM10000)."""
    table = pd.DataFrame({"label": labels, "lesion": lesions}).drop_duplicates("lesion")
    return table["label"].value_counts().sort_index()


def check_fold_count(folds: int) -> None:
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < MIN_FOLDS:
        raise ConfigError(f"--folds must be an integer >= {MIN_FOLDS}, got {folds!r}")


def check_folds(folds: int, labels: np.ndarray, lesions: np.ndarray) -> None:
    """Refuse a fold count that some class cannot fill: each fold must hold out one of its lesions."""
    check_fold_count(folds)
    counts = lesions_per_class(labels, lesions)
    rarest = counts.idxmin()
    if folds > counts.min():
        raise ConfigError(
            f"--folds {folds} needs at least {folds} lesions of every class in train+val, but "
            f"{CLASSES[rarest]} has {counts.min()}: use --folds {max(MIN_FOLDS, int(counts.min()))} or fewer")


def grouped_folds(labels: np.ndarray, lesions: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out row indices of each of `folds` lesion-disjoint, dx-stratified folds (sorted)."""
    check_folds(folds, labels, lesions)
    return [np.sort(held) for held in lesion_folds(labels, lesions, folds, seed)]
