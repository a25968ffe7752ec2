"""Classification metrics for one evaluation, all from scikit-learn.

Macro F1 is the sweep objective (HAM10000 is 67% nevi, so accuracy rewards ignoring the rare
classes); balanced accuracy is the ISIC 2018 challenge metric; melanoma recall is reported on
its own because a missed melanoma is the costly error. Per-class keys exist for all seven
classes even when a class is absent from a small split, so every trial's row has the same
columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from hamtune.labels import CLASSES, LABEL_OF, MELANOMA, NUM_CLASSES

_LABELS = list(range(NUM_CLASSES))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 averaged over the classes in `y_true` or `y_pred` (scikit-learn's default label set: a
    class absent from both would otherwise add a 0), 0 for a class whose F1 is undefined."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Recall averaged over the classes in `y_true`."""
    return float(balanced_accuracy_score(y_true, y_pred))


#: The scores of hard predictions that evaluation reports first, with intervals, and compares
#: cross-validation folds by; keys as in `compute_metrics`.
HEADLINE_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "macro_f1": macro_f1,
    "balanced_accuracy": balanced_accuracy,
}

SCALAR_METRICS: tuple[str, ...] = (
    "macro_f1",
    "balanced_accuracy",
    "weighted_f1",
    "accuracy",
    "loss",
    "auc_macro",
    "mel_recall",
    *(f"{kind}_{name}" for name in CLASSES for kind in ("precision", "recall", "f1")),
)
"""Every scalar key of `compute_metrics`, in a fixed order (for result-table schemas)."""


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, loss: float | None = None) -> dict:
    """Metrics of class probabilities `proba` (n, 7) against integer labels `y_true` (n,).

    Predictions are the argmax of `proba`. `loss` defaults to the log loss of `proba`.
    Macro and weighted F1 average over the classes present in `y_true` or the predictions
    (scikit-learn's default), balanced accuracy over the classes in `y_true`. `auc_macro` is
    the macro one-vs-rest ROC AUC over the classes present in `y_true` (a class with no
    positives has no ROC curve), NaN when fewer than two are present. Per-class precision,
    recall and F1 are 0 where undefined (`zero_division=0`), so is `mel_recall` without
    melanomas. Returns python floats, plus `confusion_matrix`: 7x7 nested lists of int, rows
    are true classes.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape != (len(y_true), NUM_CLASSES):
        raise ValueError(
            f"proba must have shape ({len(y_true)}, {NUM_CLASSES}), got {proba.shape}"
        )
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=_LABELS, zero_division=0
    )
    metrics: dict = {
        "macro_f1": macro_f1(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "weighted_f1": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
        "loss": log_loss(y_true, proba, labels=_LABELS) if loss is None else loss,
        "auc_macro": _auc_over_present_classes(y_true, proba),
        # At argmax, as evaluation's mel_recall_argmax; its mel_sensitivity is at a chosen threshold.
        "mel_recall": recall[LABEL_OF[MELANOMA]],
    }
    for i, name in enumerate(CLASSES):
        metrics[f"precision_{name}"] = precision[i]
        metrics[f"recall_{name}"] = recall[i]
        metrics[f"f1_{name}"] = f1[i]
    metrics = {key: float(value) for key, value in metrics.items()}
    metrics["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=_LABELS).tolist()
    return metrics


def _auc_over_present_classes(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes that occur in `y_true`.

    Passed to scikit-learn as one indicator column per present class (its multilabel form),
    because its multiclass form needs every column of a probability row, summing to one.
    """
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    indicator = (y_true[:, None] == present[None, :]).astype(int)
    return roc_auc_score(indicator, proba[:, present], average="macro")
