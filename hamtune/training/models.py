"""Building models from the backbone registry, their ImageNet weights, and unfreezing.

The registry itself is `hamtune.backbones` (plain Python); Keras is imported only by the
functions here that build or change models.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hamtune.backbones import MIN_IMAGE_SIZE, Backbone, block_of_layers, get_backbone, max_unfreeze_depth
from hamtune.errors import ModelError
from hamtune.labels import NUM_CLASSES
from hamtune.training.download import DownloadError, fetch_verified

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"
"""Name of the backbone sub-model inside every built model (`model.get_layer(BACKBONE_LAYER)`)."""
DROPOUT_LAYER = "dropout"
"""Name of the head's `TunableDropout`, whose rate a warm trial sets (`model.get_layer(DROPOUT_LAYER)`)."""
WEIGHTS_BASE_URL_ENV = "HAMTUNE_WEIGHTS_BASE_URL"
"""Environment variable naming a server that holds the ImageNet weights files under their Keras
file names (`<base>/<file name>`), used instead of Keras's storage: a cluster's own mirror."""


def build_model(
    backbone: str,
    image_size: int,
    dropout: float,
    weights: str = "none",
    num_classes: int = NUM_CLASSES,
    seed: int | None = None,
    augmentation: str = "full",
) -> keras.Model:
    """A classifier for uint8 images of side `image_size`, in one of two training modes.

    Graph: uint8 input -> float32 -> augmentation (training only; `augmentation` is "full",
    "flips" or "none") -> the application's preprocessing -> backbone -> global average pooling
    -> dropout (a `TunableDropout`: its rate is a variable) -> float32 softmax (kept float32 under mixed precision).

    `weights` is "imagenet", "none" or the path to a weights file of the backbone without its
    top (`include_top=False`), and decides the mode:
    - "none", **from scratch**: the whole backbone is trainable and follows the call's training
      flag, so BatchNorm normalises with batch statistics in training and its moving statistics
      move. Random weights held fixed would be a random projection that nothing can fix.
    - otherwise, **transfer**: the backbone is frozen and always runs in inference mode, so its
      BatchNorm statistics (from the pretrained weights) never move; `unfreeze` opens its top.

    For inference call it with `training=False` (`predict` and `evaluate` do): in a bare
    `model(x)` Keras's random augmentation layers default to training mode.
    """
    import keras

    from hamtune.training.augment import ApplicationPreprocessing, build_augmentation
    from hamtune.training.dropout import TunableDropout

    spec = get_backbone(backbone)
    if image_size < MIN_IMAGE_SIZE:
        raise ModelError(f"`image_size` must be >= {MIN_IMAGE_SIZE} for {backbone}, got {image_size}")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"`dropout` must be in [0, 1), got {dropout}")
    weights_file = _weights_file(spec, weights)

    net = getattr(keras.applications, spec.application)(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    # Renamed after construction: ConvNeXt prefixes its layer names with the `name` argument.
    net.name = BACKBONE_LAYER
    from_scratch = weights_file is None
    if not from_scratch:
        _load_weights(net, spec, weights_file)
    net.trainable = from_scratch

    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    x = keras.ops.cast(inputs, "float32")
    if augmentation != "none":
        x = build_augmentation(seed, augmentation)(x)
    x = ApplicationPreprocessing(spec.preprocessing, name="preprocessing", dtype="float32")(x)
    x = net(x) if from_scratch else net(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = TunableDropout(dropout, seed=seed, name=DROPOUT_LAYER)(x)
    head = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")
    outputs = head(x)
    return keras.Model(inputs, outputs, name=f"hamtune_{spec.name}")


def check_weights_file(backbone: str, weights: str) -> None:
    """Load a local weights file into its backbone once, at the smallest input size.

    The driver runs this before any trial, so a file of the other backbone (or not a weights
    file at all) stops the sweep at once with a ModelError naming the file, instead of failing
    every trial after its retries. "imagenet" and "none" are left to the trials: each node
    downloads ImageNet weights itself.
    """
    if weights in ("imagenet", "none"):
        return
    from hamtune.training.device import import_tensorflow

    import_tensorflow()
    import keras

    build_model(backbone, MIN_IMAGE_SIZE, 0.0, weights=weights)
    keras.backend.clear_session()


def _weights_file(spec: Backbone, weights: str) -> Path | None:
    """The file `weights` refers to ("imagenet" is downloaded), or None for "none"."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return download_imagenet(spec)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(
            f"weights file {str(path)!r} not found; training.weights must be 'imagenet', "
            f"'none' or the path to a weights file"
        )
    return path


def _load_weights(net: keras.Model, spec: Backbone, path: Path) -> None:
    try:
        net.load_weights(str(path))
    except (ValueError, OSError) as exc:  # Keras: wrong layers or format; h5py: not an HDF5 file.
        # Keras's first line can trail into an example that continues on the next lines: keep
        # its first sentence ("A total of 241 objects could not be loaded.").
        reason = str(exc).strip().splitlines()[0].split(". ")[0].rstrip(".:") + "."
        raise ModelError(
            f"weights file {str(path)!r} does not fit backbone {spec.name} "
            f"({spec.application} without its top): {reason}"
        ) from exc
    log.info("loaded %s weights from %s", spec.name, path)


def download_imagenet(spec: Backbone) -> Path:
    """The backbone's ImageNet weights file in Keras's cache, downloaded once per node and verified.

    The cache is Keras's own (`$KERAS_HOME/models`, by default `~/.keras/models`), so a file
    Keras already downloaded is reused. The file comes from `$HAMTUNE_WEIGHTS_BASE_URL` when
    that is set, else from `spec.imagenet_url`.
    """
    file_name = spec.imagenet_url.rsplit("/", 1)[-1]
    base = os.environ.get(WEIGHTS_BASE_URL_ENV)
    url = f"{base.rstrip('/')}/{file_name}" if base else spec.imagenet_url
    cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"
    try:
        return fetch_verified(url, cache / file_name, spec.imagenet_hash)
    except DownloadError as exc:
        raise ModelError(
            f"could not download ImageNet weights for {spec.name} into {cache}: {exc}; "
            f"download {url} elsewhere and set training.weights to its path"
        ) from exc


def unfreeze(model: keras.Model, backbone: str, depth: int) -> list[str]:
    """Make the last `depth` blocks of the backbone trainable and the rest frozen.

    Returns the unfrozen block names in network order. BatchNormalization layers stay frozen
    at every depth (their statistics come from ImageNet, and small batches would wreck them).
    Recompile the model afterwards: Keras fixes the trainable weights at compile time.
    """
    import keras

    limit = max_unfreeze_depth(backbone)
    if not 0 <= depth <= limit:
        raise ModelError(f"unfreeze depth for {backbone} must be in [0, {limit}], got {depth}")
    net = model.get_layer(BACKBONE_LAYER)
    blocks = block_of_layers([layer.name for layer in net.layers], backbone)
    order = list(dict.fromkeys(blocks))
    if len(order) != limit:  # guards the registry against a Keras renaming its layers
        raise ModelError(
            f"{net.name} of {model.name} has {len(order)} blocks matching "
            f"{get_backbone(backbone).block_pattern!r}, but the registry says {limit}"
        )
    unfrozen = order[limit - depth :]
    net.trainable = True
    for layer, block in zip(net.layers, blocks):
        layer.trainable = block in unfrozen
    for layer in _nested_layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return unfrozen


def freeze_backbone(model: keras.Model) -> None:
    """Freeze the whole backbone (depth 0): only the head trains."""
    model.get_layer(BACKBONE_LAYER).trainable = False


def _nested_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer inside `layer`, at any depth (downsampling blocks are small Sequentials)."""
    for child in getattr(layer, "layers", ()):
        yield child
        yield from _nested_layers(child)


def load_model(path: str | Path, compile: bool = True) -> keras.Model:  # noqa: A002 - Keras's own name
    """Load a `.keras` model saved by hamtune (its custom layers are registered on import).

    `compile=False` leaves out the optimizer and its state: what inference and a model built
    around this one need, at a third of the size.
    """
    import keras

    import hamtune.training.dropout  # noqa: F401  registers TunableDropout
    from hamtune.training.augment import mark_jit_safe  # and registers ApplicationPreprocessing

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found")
    model = keras.saving.load_model(path, compile=compile)
    mark_jit_safe(_nested_layers(model))
    return model
