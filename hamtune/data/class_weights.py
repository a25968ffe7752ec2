"""Class weights with a tunable strength, so a sweep can search between none and fully balanced.

HAM10000 is 67 % nevi: unweighted training all but ignores df and vasc, fully balanced weights
(~40× for df) make training noisy. `power` interpolates on a log scale between the two.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from hamtune.errors import ConfigError, DataError
from hamtune.labels import NUM_CLASSES


def class_weights(train_labels: np.ndarray, power: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-class weights `(N / (K * n_c)) ** power`, scaled so the mean weight per training image is 1.

    `N / (K * n_c)` is scikit-learn's "balanced" weight over the K classes present in
    `train_labels`. `power=0` gives all ones, `power=1` equal total weight per class. Keeping the
    mean per image at 1 keeps the loss scale, hence a good learning rate, independent of `power`.
    Classes absent from training get weight 0.0: no training image carries them, and a positive
    value would only inflate the mean. Returns float64 of shape `(num_classes,)`.
    """
    if isinstance(power, bool) or not isinstance(power, Real) or not (math.isfinite(power) and power >= 0):
        raise ConfigError(f"`power` must be a finite number >= 0, got {power!r}")
    labels = np.asarray(train_labels)
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"training labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"training labels must be integers in [0, {num_classes}), got {np.unique(labels)[:10]}")
    present = np.unique(labels)
    weights = np.zeros(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels) ** power
    return weights / weights[labels].mean()


def sample_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weight of each image's class, as float32 for Keras `sample_weight`."""
    return np.asarray(weights, dtype=np.float32)[np.asarray(labels)]
