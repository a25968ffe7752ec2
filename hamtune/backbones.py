"""The backbone registry: what hamtune knows of each backbone, in plain Python.

A backbone is one `Backbone` entry in `BACKBONES`: its Keras application, preprocessing, blocks,
default unfreeze range and ImageNet weights file. Everything else (building, weights, unfreezing,
config validation, the search space, tests) reads it from here, so adding a third backbone is
one entry. Nothing here imports Keras: config validation and the search space ask it for names
and depths in a CLI process that never imports TensorFlow (`hamtune.training.models` builds them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hamtune.errors import ModelError

MIN_IMAGE_SIZE = 32
"""Smallest input side Keras applications accept."""


@dataclass(frozen=True)
class Backbone:
    """How to build one `keras.applications` backbone and where its blocks are.

    `block_pattern` matches the names of a block's layers; its single group is the block's
    name ("stage_3_block_2", "conv5_block16"). `preprocessing` names the `keras.applications`
    submodule whose `preprocess_input` turns 0-255 RGB into what the application expects
    (the identity for ConvNeXt, which normalises inside the model). `imagenet_hash` is the
    "<algorithm>:<hex digest>" of the file at `imagenet_url`, as the application's Keras source
    checks it. `default_unfreeze` is the upper end of the default unfreeze-depth range: the top
    blocks worth tuning when a sweep file gives no range.
    """

    name: str
    application: str
    preprocessing: str
    num_blocks: int
    block_pattern: str
    imagenet_url: str
    imagenet_hash: str
    default_unfreeze: int
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
            default_unfreeze=9,
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
            default_unfreeze=16,
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
