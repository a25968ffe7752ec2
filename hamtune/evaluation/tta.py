"""Test-time augmentation over the eight dihedral views of an image.

Dermoscopy has no canonical orientation: a lesion rotated by 90° or mirrored is the same
lesion. Averaging a model's probabilities over the four rotations of the image and of its
mirror image removes the orientation the camera happened to have. The views are exact
(transposes and flips of a square image, no interpolation), and they are layers, so the final
model file carries them and a user gets the same numbers as the evaluation.
"""

from __future__ import annotations

import keras
from keras import ops

VIEWS = 8


def _rot90(images):  # noqa: ANN001, ANN202 - a backend tensor
    """Each image turned 90° counter-clockwise (as `np.rot90(images, axes=(1, 2))`)."""
    return ops.flip(ops.transpose(images, (0, 2, 1, 3)), axis=1)


@keras.saving.register_keras_serializable(package="hamtune")
class DihedralViews(keras.layers.Layer):
    """[B, S, S, C] -> [8B, S, S, C]: rotations by 0, 90, 180, 270° of the image, then of its mirror."""

    def call(self, images):  # noqa: ANN001, ANN201
        views = []
        for start in (images, ops.flip(images, axis=2)):
            view = start
            for _ in range(4):
                views.append(view)
                view = _rot90(view)
        return ops.concatenate(views, axis=0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch = None if input_shape[0] is None else VIEWS * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="hamtune")
class ViewMean(keras.layers.Layer):
    """[8B, K] -> [B, K]: the mean over the views that `DihedralViews` stacked."""

    def call(self, scores):  # noqa: ANN001, ANN201
        return ops.mean(ops.reshape(scores, (VIEWS, -1, scores.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch = None if input_shape[0] is None else input_shape[0] // VIEWS
        return (batch, input_shape[-1])


def with_tta(model: keras.Model) -> keras.Model:
    """`model` wrapped so that it returns its probabilities averaged over the eight views."""
    inputs = keras.Input(shape=model.input_shape[1:], dtype=model.input.dtype, name="image")
    return keras.Model(inputs, ViewMean(name="view_mean")(model(DihedralViews(name="views")(inputs))),
                       name=f"{model.name}_tta")
