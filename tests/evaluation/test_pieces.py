"""The evaluation's pieces on hand-worked numbers: folds, TTA views, temperature, ECE, threshold, ensemble."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from hamtune.errors import ConfigError
from hamtune.evaluation.calibration import (
    Temperature, apply_temperature, expected_calibration_error, fit_temperature, reliability,
)
from hamtune.evaluation.ensemble import average
from hamtune.evaluation.folds import check_folds, grouped_folds, lesions_per_class
from hamtune.evaluation.thresholds import (
    MELANOMA_LABEL, check_sensitivity, decide, sensitivity, sensitivity_threshold, specificity,
)

# --- folds ------------------------------------------------------------------------------------------------


def _lesion_table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """600 images of 300 lesions (1-3 images each), class mix like HAM10000's, rarest class 6 lesions."""
    rng = np.random.default_rng(seed)
    per_class = {0: 12, 1: 20, 2: 40, 3: 6, 4: 40, 5: 170, 6: 12}
    labels, lesions = [], []
    for label, count in per_class.items():
        for i in range(count):
            images = int(rng.integers(1, 4))
            labels += [label] * images
            lesions += [f"L{label}_{i}"] * images
    return np.array(labels), np.array(lesions)


def test_folds_are_lesion_disjoint_cover_everything_and_keep_every_class() -> None:
    labels, lesions = _lesion_table()
    folds = grouped_folds(labels, lesions, 3, seed=0)
    held = np.concatenate(folds)
    assert sorted(held) == list(range(len(labels)))  # each image held out exactly once
    for i, a in enumerate(folds):
        for b in folds[i + 1:]:
            assert not set(lesions[a]) & set(lesions[b])  # no lesion on two folds
    overall = np.bincount(labels, minlength=7) / len(labels)
    for rows in folds:
        share = np.bincount(labels[rows], minlength=7) / len(rows)
        assert (share > 0).all()  # every class in every fold, df's 6 lesions included
        assert np.abs(share - overall).max() < 0.05  # stratified: the mix of the whole
    assert [list(f) for f in folds] == [list(f) for f in grouped_folds(labels, lesions, 3, seed=0)]
    assert [list(f) for f in folds] != [list(f) for f in grouped_folds(labels, lesions, 3, seed=1)]


def test_more_folds_than_the_rarest_class_has_lesions_is_refused() -> None:
    labels, lesions = _lesion_table()
    assert lesions_per_class(labels, lesions)[3] == 6
    check_folds(6, labels, lesions)
    with pytest.raises(ConfigError, match=r"--folds 7 needs at least 7 lesions of every class in train\+val, "
                                          r"but df has 6: use --folds 6 or fewer"):
        check_folds(7, labels, lesions)
    with pytest.raises(ConfigError, match="--folds must be an integer >= 2, got 1"):
        check_folds(1, labels, lesions)


# --- TTA ----------------------------------------------------------------------------------------------------


def test_the_eight_dihedral_views_are_the_rotations_of_the_image_and_of_its_mirror() -> None:
    from hamtune.evaluation.tta import DihedralViews

    image = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1).astype("uint8")  # 2 images, 3x3, one channel
    views = np.asarray(DihedralViews()(image)).reshape(8, 2, 3, 3, 1)
    mirror = image[:, :, ::-1]
    expected = [np.rot90(image, k, axes=(1, 2)) for k in range(4)] + [np.rot90(mirror, k, axes=(1, 2))
                                                                       for k in range(4)]
    for got, want in zip(views, expected):
        np.testing.assert_array_equal(got, want)
    assert len({view[0].tobytes() for view in views}) == 8  # eight distinct views of an asymmetric image


def test_the_four_flip_views_are_what_random_flips_train_on() -> None:
    from hamtune.evaluation.tta import FlipViews

    image = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1).astype("uint8")
    views = np.asarray(FlipViews()(image)).reshape(4, 2, 3, 3, 1)
    for got, want in zip(views, [image, image[:, :, ::-1], image[:, ::-1], image[:, ::-1, ::-1]]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("tta", "augmentation", "views"), [
    ("auto", "flips", "flips"), ("auto", "full", "dihedral"), ("auto", "none", "none"),
    ("dihedral", "flips", "dihedral"), ("none", "full", "none"), ("flips", "none", "flips"),
])
def test_auto_tta_follows_the_training_augmentation(tta: str, augmentation: str, views: str) -> None:
    from hamtune.evaluation.tta import views_for

    assert views_for(tta, augmentation) == views


def test_tta_averages_the_model_over_the_views() -> None:
    import keras

    from hamtune.evaluation.tta import with_tta

    # A "model" that says class 0 with the top-left pixel's brightness / 255: under TTA the top-left
    # pixel visits each corner twice (4 rotations of the image and 4 of its mirror).
    inputs = keras.Input((3, 3, 1), dtype="uint8")
    corner = keras.ops.cast(inputs[:, 0, 0, :], "float32") / 255.0
    model = keras.Model(inputs, keras.ops.concatenate([corner, 1 - corner], axis=1))
    image = np.zeros((1, 3, 3, 1), dtype="uint8")
    image[0, 0, 0] = 255  # only the top-left corner is bright
    assert float(model(image)[0, 0]) == 1.0
    assert float(with_tta(model)(image)[0, 0]) == pytest.approx(0.25)  # bright corner top-left in 2 of 8 views
    assert float(with_tta(model, "flips")(image)[0, 0]) == pytest.approx(0.25)  # in 1 of 4
    edge = np.zeros((1, 3, 3, 1), dtype="uint8")
    edge[0, 0, 1] = 255  # top middle: never a corner, in any view
    assert float(with_tta(model, "flips")(edge)[0, 0]) == 0.0
    assert with_tta(model, "none") is model


# --- calibration ----------------------------------------------------------------------------------------------


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20_000, 7))
    truth = softmax(logits / 2.5, axis=1)  # the world is 2.5x less sure than the model
    y = np.array([rng.choice(7, p=p) for p in truth])
    temperature = fit_temperature(softmax(logits, axis=1), y)
    assert temperature == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(truth, y) == pytest.approx(1.0, rel=0.05)  # a calibrated model is left alone
    calibrated = apply_temperature(softmax(logits, axis=1), temperature)
    assert (calibrated.argmax(axis=1) == logits.argmax(axis=1)).all()  # never changes the decision
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, softmax(logits, axis=1)) / 3


def test_ece_on_a_toy_case() -> None:
    # Four images. Two at confidence 0.9 (one right, one wrong): bin [0.8667, 0.9333), accuracy 0.5,
    # gap 0.4. Two at confidence 0.6, both right: bin [0.6, 0.6667), accuracy 1.0, gap 0.4.
    # ECE = 2/4 * 0.4 + 2/4 * 0.4 = 0.4.
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    assert expected_calibration_error(y, proba) == pytest.approx(0.4)
    table = reliability(y, proba)
    assert table["count"].tolist() == [2, 2]
    assert table["accuracy"].tolist() == [1.0, 0.5]
    assert expected_calibration_error(np.array([0]), np.array([[1.0, 0.0]])) == 0.0  # confidence 1 is binned


def test_the_temperature_layer_is_apply_temperature() -> None:
    proba = softmax(np.random.default_rng(1).normal(size=(5, 7)), axis=1)
    np.testing.assert_allclose(np.asarray(Temperature(1.7)(proba)), apply_temperature(proba, 1.7), atol=1e-6)
    assert Temperature.from_config(Temperature(1.7).get_config()).temperature == 1.7


# --- melanoma threshold ---------------------------------------------------------------------------------------------


def test_the_threshold_is_the_highest_that_reaches_the_sensitivity() -> None:
    # 10 melanomas scored 0.95, 0.9, ..., 0.5; 0.9 sensitivity needs 9 of them: threshold 0.55.
    mel = np.linspace(0.95, 0.5, 10)
    scores = np.r_[mel, [0.6, 0.3, 0.1]]
    positive = np.r_[np.ones(10, bool), np.zeros(3, bool)]
    assert sensitivity_threshold(scores, positive, 0.9) == pytest.approx(0.55)
    assert sensitivity_threshold(scores, positive, 0.91) == pytest.approx(0.5)  # 9.1 -> all 10
    assert sensitivity_threshold(scores, positive, 0.1) == pytest.approx(0.95)
    for target in (0.0, 1.0, math.nan, -0.5):
        with pytest.raises(ConfigError, match=r"--mel-sensitivity must be in \(0, 1\), got"):
            check_sensitivity(target)


def test_the_decision_rule_and_its_sensitivity_and_specificity() -> None:
    proba = np.full((4, 7), 0.01)
    proba[0, [MELANOMA_LABEL, 5]] = [0.30, 0.64]  # mel at 0.30: above a 0.25 threshold though nv is likelier
    proba[1, [MELANOMA_LABEL, 5]] = [0.20, 0.74]
    proba[2, [MELANOMA_LABEL, 1]] = [0.50, 0.44]
    proba[3, [MELANOMA_LABEL, 2]] = [0.90, 0.04]
    decided = decide(proba, 0.25)
    assert decided.tolist() == [MELANOMA_LABEL, 5, MELANOMA_LABEL, MELANOMA_LABEL]
    assert decide(proba, 0.95).tolist() == [5, 5, 1, 2]  # never mel, even where argmax says mel
    y = np.array([MELANOMA_LABEL, MELANOMA_LABEL, 1, MELANOMA_LABEL])
    assert sensitivity(y, decided) == pytest.approx(2 / 3)
    assert specificity(y, decided) == 0.0  # the one non-melanoma was called melanoma
    assert math.isnan(sensitivity(np.array([0, 1]), np.array([0, 1])))


# --- ensemble ---------------------------------------------------------------------------------------------------------


def test_ensemble_average_and_its_model() -> None:
    import keras

    a = np.array([[0.8, 0.2], [0.4, 0.6]])
    b = np.array([[0.6, 0.4], [0.0, 1.0]])
    np.testing.assert_allclose(average([a, b]), [[0.7, 0.3], [0.2, 0.8]])
    with pytest.raises(ValueError, match="same images and classes"):
        average([a, b[:1]])

    from hamtune.evaluation.ensemble import ensemble_model

    def constant(p: np.ndarray, name: str) -> keras.Model:
        inputs = keras.Input((1,), dtype="float32")
        return keras.Model(inputs, keras.ops.zeros_like(inputs) + keras.ops.convert_to_tensor(p), name=name)

    model = ensemble_model([(constant(a[:1], "a"), 1.0), (constant(b[:1], "b"), 2.0)], name="ens")
    expected = average([apply_temperature(a[:1], 1.0), apply_temperature(b[:1], 2.0)])
    np.testing.assert_allclose(np.asarray(model(np.zeros((1, 1), "float32"))), expected, atol=1e-6)


def test_lesion_counts_ignore_repeated_images() -> None:
    counts = lesions_per_class(np.array([0, 0, 1, 1, 1]), np.array(["a", "a", "b", "c", "c"]))
    assert counts.to_dict() == {0: 1, 1: 2}
    assert isinstance(counts, pd.Series)


# --- the final model's decisions -------------------------------------------------------------------------


def _folds(scores: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"config": config, "fold": fold, "macro_f1": score}
                         for config, values in scores.items() for fold, score in enumerate(values, 1)])


def test_another_configuration_replaces_the_sweeps_best_only_beyond_the_paired_standard_error() -> None:
    from hamtune.evaluation.crossval import paired_choice, paired_gains

    # Config 2 is ahead on every fold: gains 0.02, 0.01, 0.02, mean 0.01667, std 0.00577, SE 0.00333.
    # Config 3 is ahead on average but not fold by fold: 0.2, -0.2, 0.03, mean 0.01, std 0.2007, SE 0.1159.
    gain, se = paired_gains(_folds({1: [0.40, 0.50, 0.45], 2: [0.42, 0.51, 0.47], 3: [0.60, 0.30, 0.48]}))
    np.testing.assert_allclose(gain, [0.0, 0.016667, 0.01], atol=1e-6)
    np.testing.assert_allclose(se, [0.0, 0.003333, 0.115902], atol=1e-6)
    assert paired_choice(gain, se) == 1
    assert paired_choice(gain[[0, 2]], se[[0, 2]]) == 0  # config 3 alone: within its noise
    # The real split's case: 0.009 ahead over 2 folds (std 0.049 against 0.005): the sweep's best stays.
    gain, se = paired_gains(_folds({1: [0.4015, 0.4085], 2: [0.449, 0.379]}))
    assert gain[1] == pytest.approx(0.009) and se[1] == pytest.approx(0.0385)  # gains 0.0475, -0.0295
    assert paired_choice(gain, se) == 0


def test_the_ensemble_takes_configurations_within_one_standard_error_of_the_best() -> None:
    from hamtune.evaluation.steps import ensemble_members

    summary = pd.DataFrame({"trial_id": ["a", "b", "c"], "cv_macro_f1_mean": [0.45, 0.44, 0.30],
                            "cv_macro_f1_std": [0.03, 0.02, 0.05]})
    members, left_out = ensemble_members(summary, chosen=0, folds=3)  # floor 0.45 - 0.03 / sqrt(3) = 0.4327
    assert members == [0, 1]
    assert left_out == ["trial c left out of the ensemble: CV macro F1 0.3000, below the best's 0.4500 less one "
                        "standard error (0.4327)"]
    assert ensemble_members(summary, chosen=2, folds=3)[0] == [0, 1, 2]  # the deployed one always


def test_a_step_is_kept_only_where_it_improved_its_out_of_fold_score() -> None:
    from hamtune.evaluation.steps import judge

    dropped = judge("tta", "TTA over the 4 flips views", "macro F1", 0.40, 0.41, force=False)
    assert not dropped.kept
    assert dropped.line() == ("TTA over the 4 flips views: dropped (out-of-fold macro F1 0.4000 with it, "
                              "0.4100 without)")
    forced = judge("tta", "TTA", "macro F1", 0.40, 0.41, force=True)
    assert forced.kept and "kept by --force-tta although it did not help" in forced.line()
    assert judge("calibration", "temperature scaling", "ECE", 0.05, 0.12, force=False).kept  # lower is better
    assert not judge("calibration", "temperature scaling", "ECE", 0.12, 0.12, force=False).kept
    assert judge("ensemble", "ensemble", "macro F1", 0.43, 0.42, force=False).record()["helped"]
