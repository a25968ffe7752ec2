"""Test-time augmentation: a model's probabilities averaged over exact views of each image.

Dermoscopy has no canonical orientation: a lesion mirrored or rotated by 90° is the same lesion.
Which views help depends on what the model saw in training: one trained with flips only (the
from-scratch default) has never seen a 90° rotation, so it is scored on the 4 flip views
(`FLIP_VIEWS`); one trained with the `full` augmentation (rotations included) on the 8 dihedral
views (`DIHEDRAL_VIEWS`); one trained without augmentation on its own image only
(`views_for`). The views are exact (transposes and flips of a square image, no interpolation),
and they are layers, so the final model file carries them and a user gets the same numbers as
the evaluation.
"""

from __future__ import annotations

import keras
from keras import ops


#: How many views each view set stacks.
VIEW_COUNTS = {"flips": 4, "dihedral": 8}
#: The view set `auto` picks for each `training.augmentation` (resolved, never "auto").
VIEWS_FOR_AUGMENTATION = {"none": "none", "flips": "flips", "full": "dihedral"}


def views_for(tta: str, augmentation: str) -> str:
    """The view set of a `--tta` choice (one of `TTA_CHOICES`, checked by `evaluate`) for a model
    trained with `augmentation`."""
    return VIEWS_FOR_AUGMENTATION[augmentation] if tta == "auto" else tta


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
        batch = None if input_shape[0] is None else VIEW_COUNTS["dihedral"] * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="hamtune")
class FlipViews(keras.layers.Layer):
    """[B, S, S, C] -> [4B, S, S, C]: the image, mirrored left-right, upside down, and both
    (the flips `RandomFlip("horizontal_and_vertical")` trains on)."""

    def call(self, images):  # noqa: ANN001, ANN201
        across = ops.flip(images, axis=2)
        return ops.concatenate([images, across, ops.flip(images, axis=1), ops.flip(across, axis=1)], axis=0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch = None if input_shape[0] is None else VIEW_COUNTS["flips"] * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="hamtune")
class ViewMean(keras.layers.Layer):
    """[VB, K] -> [B, K]: the mean over the `views` views stacked in front of the model."""

    def __init__(self, views: int = VIEW_COUNTS["dihedral"], **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.views = views

    def call(self, scores):  # noqa: ANN001, ANN201
        return ops.mean(ops.reshape(scores, (self.views, -1, scores.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch = None if input_shape[0] is None else input_shape[0] // self.views
        return (batch, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "views": self.views}


def with_tta(model: keras.Model, views: str = "dihedral") -> keras.Model:
    """`model` wrapped so that it returns its probabilities averaged over the `views` view set
    ("flips" or "dihedral"; "none" returns `model` itself)."""
    if views == "none":
        return model
    stack = {"flips": FlipViews, "dihedral": DihedralViews}[views](name="views")
    inputs = keras.Input(shape=model.input_shape[1:], dtype=model.input.dtype, name="image")
    return keras.Model(inputs, ViewMean(VIEW_COUNTS[views], name="view_mean")(model(stack(inputs))),
                       name=f"{model.name}_tta")
