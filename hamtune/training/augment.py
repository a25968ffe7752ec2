"""The in-graph image layers in front of the backbone: augmentation and preprocessing.

The augmentation lives inside the model rather than in `tf.data`, so the cached uint8 images are
fed unchanged and the same model file serves training and inference: Keras preprocessing layers
are random only when called with `training=True` and are the identity otherwise. The factors are
the modest ones of a typical HAM10000 notebook: dermoscopy images have no canonical orientation
(any flip is plausible) but colour and scale carry diagnostic meaning, so those move little.

The preprocessing is a registered layer rather than a `Lambda`, so `.keras` files save and load
without unsafe deserialisation.

Keras marks `RandomRotation` and `RandomZoom` as not jit-safe, because their TensorFlow kernel
has no XLA version. Under JAX they are plain jax.numpy, so they are marked jit-safe there:
otherwise Keras would run every JAX training step eagerly, op by op. Under TensorFlow the mark
stays, and the model runs as a TF graph without XLA (XLA on CPU was slower to start, no faster).
"""

from __future__ import annotations

from collections.abc import Iterable

import keras

# Every layer is float32 whatever the global policy: under mixed_float16 the random
# transformations would otherwise round 0-255 pixel values to float16's 3 significant digits.
_DTYPE = "float32"
ROTATION_FACTOR = 0.15
ZOOM_FACTOR = 0.1
BRIGHTNESS_FACTOR = 0.1
CONTRAST_FACTOR = 0.1
VALUE_RANGE = (0, 255)


#: Layers kept from the full list per `training.augmentation` strength ("none" builds no block).
STRENGTHS: dict[str, int] = {"flips": 1, "full": 5}


def build_augmentation(seed: int | None = None, strength: str = "full") -> keras.Sequential:
    """The augmentation block (named "augmentation") for float32 images in 0-255.

    `strength` is "full" (flips, rotation, zoom, brightness, contrast) or "flips" (horizontal
    and vertical flips only); for "none" `build_model` leaves the block out. `seed` makes the
    random draws repeatable; each layer gets its own seed derived from it so flips and rotations
    are not correlated.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"augmentation strength must be 'flips' or 'full', got {strength!r}")

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers = [
        keras.layers.RandomFlip("horizontal_and_vertical", seed=layer_seed(0), dtype=_DTYPE),
        keras.layers.RandomRotation(
            ROTATION_FACTOR, fill_mode="reflect", seed=layer_seed(1), dtype=_DTYPE
        ),
        keras.layers.RandomZoom(ZOOM_FACTOR, fill_mode="reflect", seed=layer_seed(2), dtype=_DTYPE),
        keras.layers.RandomBrightness(
            BRIGHTNESS_FACTOR, value_range=VALUE_RANGE, seed=layer_seed(3), dtype=_DTYPE
        ),
        keras.layers.RandomContrast(
            CONTRAST_FACTOR, value_range=VALUE_RANGE, seed=layer_seed(4), dtype=_DTYPE
        ),
    ]
    block = keras.Sequential(layers[: STRENGTHS[strength]], name="augmentation")
    mark_jit_safe(block.layers)
    return block


def mark_jit_safe(layers: Iterable[keras.layers.Layer]) -> None:
    """Under JAX, mark the rotations and zooms among `layers` jit-safe.

    Called on a new augmentation block and on every layer of a loaded model: a `.keras` file
    restores these layers with Keras's own mark, and `predict` would then run a loaded model
    eagerly, op by op.
    """
    if keras.backend.backend() != "jax":
        return
    for layer in layers:
        if isinstance(layer, (keras.layers.RandomRotation, keras.layers.RandomZoom)):
            layer.supports_jit = True


@keras.saving.register_keras_serializable(package="hamtune")
class ApplicationPreprocessing(keras.layers.Layer):
    """`keras.applications.<module>.preprocess_input` as a layer, for 0-255 RGB input.

    Applying each application's own function (the identity for ConvNeXt, torch-style mean/std
    for DenseNet) keeps the model's input contract the one Keras documents for its weights.
    """

    def __init__(self, module: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.module = module
        self._preprocess = getattr(keras.applications, module).preprocess_input

    def call(self, images):
        return self._preprocess(images)

    def get_config(self) -> dict:
        return {**super().get_config(), "module": self.module}
