"""The in-graph augmentation on real HAM10000 images: random in training, identity otherwise."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from hamtune.training.augment import ApplicationPreprocessing, build_augmentation

SIZE = 64


@pytest.fixture(scope="module")
def images(sample_dir: Path) -> np.ndarray:
    """Four real lesion images, resized, as float32 0-255 (what the model feeds the block)."""
    paths = sorted(sample_dir.glob("*/*.jpg"))[:4]
    return np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE)), dtype=np.float32) for p in paths]
    )


def test_training_mode_changes_images_within_pixel_range(images: np.ndarray) -> None:
    out = np.asarray(build_augmentation(seed=1)(images, training=True))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    assert not np.allclose(out, images)
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_inference_mode_is_identity(images: np.ndarray) -> None:
    assert np.array_equal(np.asarray(build_augmentation(seed=1)(images, training=False)), images)


def test_same_seed_same_draws(images: np.ndarray) -> None:
    first = np.asarray(build_augmentation(seed=7)(images, training=True))
    again = np.asarray(build_augmentation(seed=7)(images, training=True))
    assert np.array_equal(first, again)


def test_stays_float32_under_mixed_precision(images: np.ndarray) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        augmentation = build_augmentation(seed=1)
        out = augmentation(images, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in augmentation.layers} == {"float32"}
    assert out.dtype == "float32"


def test_preprocessing_layer_round_trips_its_config() -> None:
    layer = ApplicationPreprocessing("densenet", name="preprocessing")
    clone = ApplicationPreprocessing.from_config(layer.get_config())
    assert clone.module == "densenet"
    registered = keras.saving.get_registered_name(ApplicationPreprocessing)
    assert registered == "hamtune>ApplicationPreprocessing"


def test_strengths_keep_a_prefix_of_the_full_list() -> None:
    assert [type(layer).__name__ for layer in build_augmentation(seed=1, strength="flips").layers] == ["RandomFlip"]
    assert len(build_augmentation(seed=1, strength="full").layers) == 5
    with pytest.raises(ValueError, match="'flips' or 'full', got 'none'"):
        build_augmentation(strength="none")


def test_no_augmentation_builds_a_model_without_the_block() -> None:
    from hamtune.training.models import build_model

    names = {layer.name for layer in build_model("densenet121", 32, 0.0, weights="none", augmentation="none").layers}
    assert "augmentation" not in names and "preprocessing" in names
