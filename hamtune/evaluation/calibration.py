"""Temperature scaling and expected calibration error.

A network trained with class weights and early stopping is rarely calibrated: its confidence
is not its accuracy. Temperature scaling (Guo et al., 2017) divides the log-probabilities by
one number T fitted by maximum likelihood on held-out predictions (out-of-fold, never test),
which changes confidence but never the argmax. ECE measures the gap between confidence and
accuracy over bins of the top-label confidence.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from keras import ops
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

#: Smallest probability taken to the log: a softmax output of exactly 0 would give -inf.
EPSILON = 1e-7
ECE_BINS = 15
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def _logits(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, EPSILON, 1.0))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(proba) / T): T > 1 softens, T < 1 sharpens, T = 1 changes nothing."""
    return softmax(_logits(proba) / temperature, axis=1)


def fit_temperature(proba: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the negative log-likelihood of `y_true`."""
    logits, rows = _logits(proba), np.arange(len(y_true))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean())

    return float(np.exp(minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded").x))


def reliability(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width bin of top-label confidence: its mean confidence, accuracy and image count."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 falls in the last bin
    table = pd.DataFrame({"bin": which, "confidence": confidence, "accuracy": correct.astype(float)})
    grouped = table.groupby("bin").agg(confidence=("confidence", "mean"), accuracy=("accuracy", "mean"),
                                       count=("accuracy", "size"))
    return grouped.reset_index().assign(low=lambda t: t["bin"] / bins, high=lambda t: (t["bin"] + 1) / bins)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of images."""
    table = reliability(y_true, proba, bins)
    return float((table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / len(y_true))


@keras.saving.register_keras_serializable(package="hamtune")
class Temperature(keras.layers.Layer):
    """Probabilities in, temperature-scaled probabilities out: `apply_temperature` as a layer."""

    def __init__(self, temperature: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, proba):  # noqa: ANN001, ANN201
        return ops.softmax(ops.log(ops.clip(proba, EPSILON, 1.0)) / self.temperature, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}
