"""Class weights with a power: hand-computed values, the two ends, and the unit mean per image."""

from __future__ import annotations

import numpy as np
import pytest

from hamtune.data.class_weights import class_weights, sample_weights
from hamtune.errors import ConfigError, DataError

# 6 images over 3 of 4 classes: counts 3, 1, 2, 0.
LABELS = np.array([0, 0, 0, 1, 2, 2])


def test_matches_hand_computation() -> None:
    # balanced N / (K n_c) with N = 6, K = 3 present: 6/9, 6/3, 6/6; then ** 0.5
    raw = np.array([(6 / 9) ** 0.5, 2**0.5, 1.0])
    mean_per_image = (3 * raw[0] + 1 * raw[1] + 2 * raw[2]) / 6
    expected = np.append(raw / mean_per_image, 0.0)
    np.testing.assert_allclose(class_weights(LABELS, 0.5, num_classes=4), expected)


def test_power_zero_is_all_ones_and_absent_classes_are_zero() -> None:
    np.testing.assert_allclose(class_weights(LABELS, 0, num_classes=4), [1, 1, 1, 0])


def test_power_one_gives_every_class_the_same_total_weight() -> None:
    weights = class_weights(LABELS, 1.0, num_classes=4)
    totals = np.bincount(LABELS, weights=sample_weights(LABELS, weights))
    np.testing.assert_allclose(totals, totals[0], rtol=1e-6)


@pytest.mark.parametrize("power", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_mean_weight_per_training_image_is_one(power: float) -> None:
    labels = np.random.default_rng(0).choice(7, size=500, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    weights = class_weights(labels, power)
    assert weights.shape == (7,)
    assert sample_weights(labels, weights).mean() == pytest.approx(1.0, rel=1e-6)


def test_sample_weights_are_float32_per_image() -> None:
    out = sample_weights(np.array([2, 0, 2]), np.array([0.5, 1.0, 3.0]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [3.0, 0.5, 3.0])


@pytest.mark.parametrize("power", [-0.5, float("nan"), float("inf"), "1", True, None])
def test_bad_power_is_a_config_error(power: object) -> None:
    with pytest.raises(ConfigError, match=r"`power` must be a finite number >= 0, got"):
        class_weights(LABELS, power)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([], dtype=int), r"non-empty 1-D array, got shape \(0,\)"),
        (np.zeros((2, 3), dtype=int), r"non-empty 1-D array, got shape \(2, 3\)"),
        (np.array([0, 7]), r"integers in \[0, 7\)"),
        (np.array([-1, 2]), r"integers in \[0, 7\)"),
        (np.array([0.0, 1.0]), r"integers in \[0, 7\)"),
    ],
)
def test_bad_labels_are_data_errors(labels: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        class_weights(labels, 1.0)
