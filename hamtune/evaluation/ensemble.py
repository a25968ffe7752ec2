"""Ensembles: the mean of several models' calibrated probabilities.

Each member is calibrated with its own temperature first, so that an over-confident member
does not outvote the others; the mean of calibrated probabilities is again a probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from hamtune.evaluation.calibration import Temperature


def average(probas: Sequence[np.ndarray]) -> np.ndarray:
    """The elementwise mean of equally shaped (n, classes) probability arrays."""
    shapes = {p.shape for p in probas}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members must predict the same images and classes, got shapes {sorted(shapes)}")
    return np.mean(np.stack(probas), axis=0)


def ensemble_model(members: Sequence[tuple[keras.Model, float]], name: str) -> keras.Model:
    """One model: each member's output divided by its temperature, then averaged.

    A single member gives a calibrated single model; the output is always probabilities.
    """
    first = members[0][0]
    inputs = keras.Input(shape=first.input_shape[1:], dtype=first.input.dtype, name="image")
    outputs = [Temperature(t, name=f"temperature_{i}")(model(inputs)) for i, (model, t) in enumerate(members)]
    output = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="ensemble_mean")(outputs)
    return keras.Model(inputs, output, name=name)
