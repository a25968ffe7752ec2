"""Backbone registry, model builder, weights and unfreeze depth, on the real Keras applications.

Every real backbone is built once per session (32 px, no weights; ~2 s) and never fitted: the
graph tracing of a fit costs ~80 s and belongs to the trainable's tests. Tests parametrised over
`BACKBONES` cover a newly registered backbone automatically.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from hamtune.training.augment import ApplicationPreprocessing
from hamtune.errors import ModelError
from hamtune.backbones import BACKBONES, block_of_layers, get_backbone, max_unfreeze_depth
from hamtune.training.models import BACKBONE_LAYER, build_model, freeze_backbone, load_model, unfreeze
from tests.support.sweeps import backbone_weights_file

SIZE = 32
NAMES = sorted(BACKBONES)

# What Keras documents for each application's 0-255 RGB input, written out independently of
# the registry: a new backbone must add its reference here.
REFERENCE_PREPROCESSING: dict[str, Callable] = {
    "convnext_small": keras.applications.convnext.preprocess_input,
    "densenet121": keras.applications.densenet.preprocess_input,
}


@functools.cache
def model_for(name: str) -> keras.Model:
    """The session's one transfer-mode model per backbone (tests set its unfreeze depth themselves)."""
    return build_model(name, SIZE, 0.2, weights=backbone_weights_file(name), seed=0)


def depths(name: str) -> list[int]:
    """Depth 0, 1, a middle value and the maximum."""
    limit = max_unfreeze_depth(name)
    return [0, 1, limit // 2, limit]


def all_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    for child in getattr(layer, "layers", ()):
        yield child
        yield from all_layers(child)


@pytest.fixture(scope="module")
def batch(sample_dir: Path) -> np.ndarray:
    """Four real lesion images as the model receives them: uint8, SIZE x SIZE."""
    paths = sorted(sample_dir.glob("*/*.jpg"))[:4]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))) for p in paths])


@pytest.fixture
def mixed_precision() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- registry and layer-to-block assignment (no TensorFlow model needed) -------------------


def test_registry_depths() -> None:
    assert max_unfreeze_depth("convnext_small") == 36
    assert max_unfreeze_depth("densenet121") == 58


def test_unknown_backbone_lists_the_valid_names() -> None:
    expected = r"unknown backbone 'resnet50'; valid backbones: convnext_small, densenet121"
    with pytest.raises(ModelError, match=expected):
        get_backbone("resnet50")


@pytest.mark.parametrize(
    ("backbone", "names", "expected"),
    [
        (
            "densenet121",
            ["input_layer", "conv1_conv", "conv1_bn", "pool1",  # stem
             "conv2_block1_0_bn", "conv2_block1_concat",
             "conv2_block2_0_bn", "conv2_block2_concat", "pool2_bn", "pool2_pool",  # transition
             "conv3_block1_1_conv", "bn", "relu"],  # final norm
            ["conv2_block1"] * 6 + ["conv2_block2"] * 4 + ["conv3_block1"] * 3,
        ),
        (
            "convnext_small",
            ["input_layer", "convnext_small_prestem_normalization", "convnext_small_stem",
             "convnext_small_stage_0_block_0_depthwise_conv", "convnext_small_stage_0_block_0_identity",
             "convnext_small_downsampling_block_0",
             "convnext_small_stage_1_block_0_depthwise_conv", "layer_normalization"],
            ["stage_0_block_0"] * 6 + ["stage_1_block_0"] * 2,
        ),
    ],
)
def test_stem_goes_with_the_first_block_and_in_between_layers_with_the_preceding(
    backbone: str, names: list[str], expected: list[str]
) -> None:
    assert block_of_layers(names, backbone) == expected


def test_layer_names_without_blocks_are_an_error() -> None:
    expected = r"no layer name matches the densenet121 block pattern .*built for densenet121\?"
    with pytest.raises(ModelError, match=expected):
        block_of_layers(["input_layer", "convnext_small_stage_0_block_0_gelu"], "densenet121")


# --- real backbones ----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_block_count_matches_the_real_layer_names(name: str) -> None:
    net = model_for(name).get_layer(BACKBONE_LAYER)
    blocks = block_of_layers([layer.name for layer in net.layers], name)
    assert len(set(blocks)) == BACKBONES[name].num_blocks
    # each block is one contiguous run of layers in network order
    assert len(list(itertools.groupby(blocks))) == BACKBONES[name].num_blocks


@pytest.mark.parametrize("name", NAMES)
def test_unfreeze_makes_exactly_the_last_blocks_trainable(name: str) -> None:
    model = model_for(name)
    net = model.get_layer(BACKBONE_LAYER)
    names = [layer.name for layer in net.layers]
    pattern = re.compile(BACKBONES[name].block_pattern)
    # Independent expectation by position: where each block's first layer sits.
    starts: dict[str, int] = {}
    for i, layer_name in enumerate(names):
        if (m := pattern.match(layer_name)) and m.group(1) not in starts:
            starts[m.group(1)] = i
    order, limit = list(starts), max_unfreeze_depth(name)
    batchnorm = {
        layer.name for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)
    }
    for depth in depths(name):
        if depth == 0:
            expected = set()
        elif depth == limit:  # the stem too
            expected = set(names) - batchnorm
        else:
            expected = set(names[starts[order[limit - depth]] :]) - batchnorm
        assert unfreeze(model, name, depth) == order[limit - depth :]
        assert {layer.name for layer in net.layers if layer.trainable} == expected, depth
        # the variables the optimizer will see: those of the unfrozen layers, plus the head
        trainable = {
            v.path
            for layer in net.layers
            if layer.name in expected
            for v in layer.weights
            if v.trainable
        }
        trainable |= {v.path for v in model.get_layer("classifier").weights}
        assert {v.path for v in model.trainable_weights} == trainable, depth


# Hand-written expectations for the known backbones, including the between-block rule.
EXPLICIT_UNFREEZE = [
    ("densenet121", 1, ["conv5_block16"],
     lambda n: n.startswith("conv5_block16_") or n == "relu"),
    ("densenet121", 17, ["conv4_block24"] + [f"conv5_block{i}" for i in range(1, 17)],
     lambda n: n.startswith(("conv4_block24_", "pool4_", "conv5_")) or n == "relu"),
    ("convnext_small", 1, ["stage_3_block_2"],
     lambda n: n.startswith("convnext_small_stage_3_block_2_") or n == "layer_normalization"),
    ("convnext_small", 4, ["stage_2_block_26", "stage_3_block_0", "stage_3_block_1", "stage_3_block_2"],
     lambda n: n.startswith(("convnext_small_stage_2_block_26_", "convnext_small_stage_3_"))
     or n in {"convnext_small_downsampling_block_2", "layer_normalization"}),
]


@pytest.mark.parametrize(("name", "depth", "blocks", "is_unfrozen"), EXPLICIT_UNFREEZE)
def test_unfreeze_known_backbones(
    name: str, depth: int, blocks: list[str], is_unfrozen: Callable
) -> None:
    model = model_for(name)
    net = model.get_layer(BACKBONE_LAYER)
    assert unfreeze(model, name, depth) == blocks
    for layer in net.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (is_unfrozen(layer.name) and not is_bn), layer.name


@pytest.mark.parametrize("name", NAMES)
def test_batchnorm_is_frozen_and_in_inference_mode_at_every_depth(
    name: str, batch: np.ndarray
) -> None:
    model = model_for(name)
    net = model.get_layer(BACKBONE_LAYER)
    bn = [layer for layer in all_layers(net) if isinstance(layer, keras.layers.BatchNormalization)]
    for depth in depths(name):
        unfreeze(model, name, depth)
        assert not [layer.name for layer in bn if layer.trainable], depth
    before = [np.array(v) for layer in bn for v in layer.non_trainable_weights]
    model(batch, training=True)  # a training step's forward pass must not move the statistics
    after = [np.array(v) for layer in bn for v in layer.non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("name", NAMES)
def test_from_scratch_the_whole_backbone_trains_and_batchnorm_follows_the_training_flag(
    name: str, batch: np.ndarray
) -> None:
    """weights none: every backbone variable is trainable, and a training forward pass moves
    BatchNorm's statistics (DenseNet121) while inference leaves them alone."""
    model = build_model(name, SIZE, 0.2, weights="none", seed=0)
    net = model.get_layer(BACKBONE_LAYER)
    assert net.trainable and len(model.trainable_weights) > len(model.get_layer("classifier").weights)
    bn = [layer for layer in all_layers(net) if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.trainable for layer in bn)
    stats = lambda: [np.array(v) for layer in bn for v in layer.non_trainable_weights]  # noqa: E731
    before = stats()
    model(batch, training=False)
    assert all(np.array_equal(a, b) for a, b in zip(before, stats()))
    model(batch, training=True)
    assert (name == "convnext_small") == all(np.array_equal(a, b) for a, b in zip(before, stats()))  # LayerNorm only


@pytest.mark.parametrize("name", NAMES)
def test_freeze_backbone_is_depth_zero(name: str) -> None:
    model = model_for(name)
    unfreeze(model, name, max_unfreeze_depth(name))
    freeze_backbone(model)
    head = {v.path for v in model.get_layer("classifier").weights}
    assert {v.path for v in model.trainable_weights} == head


@pytest.mark.parametrize("name", NAMES)
def test_depth_out_of_range_names_the_model_and_its_maximum(name: str) -> None:
    limit = max_unfreeze_depth(name)
    for depth in (-1, limit + 1):
        expected = rf"unfreeze depth for {name} must be in \[0, {limit}\], got {depth}"
        with pytest.raises(ModelError, match=expected):
            unfreeze(model_for(name), name, depth)


def test_unfreeze_with_the_wrong_backbone_name_is_an_error() -> None:
    with pytest.raises(ModelError, match="no layer name matches the convnext_small block pattern"):
        unfreeze(model_for("densenet121"), "convnext_small", 1)


@pytest.mark.parametrize("name", NAMES)
def test_preprocessing_matches_the_keras_reference(name: str, batch: np.ndarray) -> None:
    model = model_for(name)
    preprocess = keras.Model(model.input, model.get_layer("preprocessing").output)
    out = np.asarray(preprocess(batch, training=False))
    reference = np.asarray(REFERENCE_PREPROCESSING[name](batch.astype(np.float32)))
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-5)


def test_the_backbones_get_different_preprocessing(batch: np.ndarray) -> None:
    def preprocessed(name: str) -> np.ndarray:
        model = model_for(name)
        preprocess = keras.Model(model.input, model.get_layer("preprocessing").output)
        return np.asarray(preprocess(batch, training=False))

    convnext, densenet = preprocessed("convnext_small"), preprocessed("densenet121")
    np.testing.assert_array_equal(convnext, batch)  # ConvNeXt normalises inside the application:
    convnext_net = model_for("convnext_small").get_layer(BACKBONE_LAYER)
    assert any(isinstance(layer, keras.layers.Normalization) for layer in convnext_net.layers)
    assert densenet.min() < 0 < densenet.max() < 5  # torch-style mean/std


@pytest.mark.parametrize("name", NAMES)
def test_output_is_float32_softmax_under_mixed_precision(
    name: str, batch: np.ndarray, mixed_precision: None
) -> None:
    model = build_model(name, SIZE, 0.2, seed=0)
    out = model(batch, training=False)
    assert model.get_layer(BACKBONE_LAYER).compute_dtype == "float16"
    assert out.dtype == "float32"
    assert out.shape == (len(batch), 7)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_model_saves_and_loads(name: str, batch: np.ndarray, tmp_path: Path) -> None:
    model = model_for(name)
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("preprocessing"), ApplicationPreprocessing)
    np.testing.assert_array_equal(loaded(batch, training=False), model(batch, training=False))


def test_load_model_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file '.*nothing\.keras' not found"):
        load_model(tmp_path / "nothing.keras")


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, on the mismatched file
def test_local_weights_load_into_their_architecture_only(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.weights.h5"
    source = model_for(name).get_layer(BACKBONE_LAYER)
    source.save_weights(path)
    loaded = build_model(name, SIZE, 0.2, weights=str(path)).get_layer(BACKBONE_LAYER)
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights()))
    for other in set(NAMES) - {name}:
        expected = rf"weights file '{re.escape(str(path))}' does not fit backbone {other}"
        with pytest.raises(ModelError, match=expected):
            build_model(other, SIZE, 0.2, weights=str(path))


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.weights.h5"
    expected = rf"weights file '{re.escape(str(path))}' not found; training.weights must be"
    with pytest.raises(ModelError, match=expected):
        build_model("densenet121", SIZE, 0.2, weights=str(path))


@pytest.fixture
def offline() -> Iterator[None]:
    """Downloads fail at once: every URL goes through a proxy on a closed local port."""
    closed = "http://127.0.0.1:9"
    proxy = urllib.request.ProxyHandler({"http": closed, "https": closed})
    urllib.request.install_opener(urllib.request.build_opener(proxy))
    try:
        yield
    finally:
        urllib.request.install_opener(None)


@pytest.mark.parametrize("name", NAMES)
def test_imagenet_without_internet_points_to_the_local_file_option(
    name: str, offline: None
) -> None:
    url = get_backbone(name).imagenet_url
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = keras_home / "models" / url.rsplit("/", 1)[-1]
    if cached.exists():
        pytest.skip(f"ImageNet weights already cached at {cached}: no download to fail")
    expected = (
        rf"could not download ImageNet weights for {name} .*"
        rf"download {re.escape(url)} elsewhere and set training.weights to its path"
    )
    with pytest.raises(ModelError, match=expected):
        build_model(name, SIZE, 0.2, weights="imagenet")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 16}, r"`image_size` must be >= 32 for densenet121, got 16"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\), got 1.0"),
        ({"backbone": "vgg16"}, r"unknown backbone 'vgg16'"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_model(**{"backbone": "densenet121", "image_size": SIZE, "dropout": 0.2, **kwargs})
