"""Backbone registry, model builder and unfreeze depth.

A backbone is one small `Backbone` entry in `BACKBONES`; everything else (building, weights,
unfreezing, tests) is shared, so adding a third backbone is one entry. The registry and the
layer-to-block assignment are plain Python, so config validation and the search space can ask
for names and maximum depths without importing TensorFlow; Keras is imported only by the
functions that build or change models.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hamtune.download import DownloadError, fetch_verified
from hamtune.errors import ModelError
from hamtune.labels import NUM_CLASSES

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"
"""Name of the backbone sub-model inside every built model (`model.get_layer(BACKBONE_LAYER)`)."""
MIN_IMAGE_SIZE = 32
"""Smallest input side Keras applications accept."""
WEIGHTS_BASE_URL_ENV = "HAMTUNE_WEIGHTS_BASE_URL"
"""Environment variable naming a server that holds the ImageNet weights files under their Keras
file names (`<base>/<file name>`), used instead of Keras's storage: a cluster's own mirror."""


@dataclass(frozen=True)
class Backbone:
    """How to build one `keras.applications` backbone and where its blocks are.

    `block_pattern` matches the names of a block's layers; its single group is the block's
    name ("stage_3_block_2", "conv5_block16"). `preprocessing` names the `keras.applications`
    submodule whose `preprocess_input` turns 0-255 RGB into what the application expects
    (the identity for ConvNeXt, which normalises inside the model). `imagenet_hash` is the
    "<algorithm>:<hex digest>" of the file at `imagenet_url`, as the application's Keras source
    checks it.
    """

    name: str
    application: str
    preprocessing: str
    num_blocks: int
    block_pattern: str
    imagenet_url: str
    imagenet_hash: str
    default_image_size: int = 224


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications"

BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            name="convnext_small",
            application="ConvNeXtSmall",
            preprocessing="convnext",
            num_blocks=36,
            block_pattern=r"convnext_small_(stage_\d+_block_\d+)_",
            imagenet_url=f"{_KERAS_WEIGHTS}/convnext/convnext_small_notop.h5",
            imagenet_hash="sha256:6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab",
        ),
        Backbone(
            name="densenet121",
            application="DenseNet121",
            preprocessing="densenet",
            num_blocks=58,
            block_pattern=r"(conv\d+_block\d+)_",
            imagenet_url=(
                f"{_KERAS_WEIGHTS}/densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
            ),
            imagenet_hash="md5:30ee3e1110167f948a6b9946edeeb738",
        ),
    )
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for `name`; a ModelError lists the valid names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ModelError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}"
        ) from None


def max_unfreeze_depth(name: str) -> int:
    """Largest unfreeze depth for a backbone: all of its blocks."""
    return get_backbone(name).num_blocks


def block_of_layers(layer_names: Sequence[str], backbone: str) -> list[str]:
    """The block each layer belongs to, given the backbone's layer names in network order.

    Layers matching the block pattern belong to that block. Layers between blocks (ConvNeXt
    downsampling, DenseNet transitions, the final norm) go with the preceding block, and the
    stem (everything before the first block) with the first block, so unfreezing every block
    unfreezes the whole backbone.
    """
    spec = get_backbone(backbone)
    pattern = re.compile(spec.block_pattern)
    matched = [m.group(1) if (m := pattern.match(name)) else None for name in layer_names]
    first = next((block for block in matched if block is not None), None)
    if first is None:
        raise ModelError(
            f"no layer name matches the {spec.name} block pattern {spec.block_pattern!r}; "
            f"was the model built for {spec.name}?"
        )
    blocks: list[str] = []
    current = first
    for block in matched:
        current = block or current
        blocks.append(current)
    return blocks


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
    -> dropout -> float32 softmax (kept float32 under mixed precision).

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

    from hamtune.augment import ApplicationPreprocessing, build_augmentation

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
    x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
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
    from hamtune.device import import_tensorflow

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

    import hamtune.augment  # noqa: F401  registers ApplicationPreprocessing for deserialisation

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found")
    return keras.saving.load_model(path, compile=compile)
