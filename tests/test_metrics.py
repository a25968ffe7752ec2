"""compute_metrics against values worked out by hand on small label vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hamtune.labels import CLASSES, NUM_CLASSES
from hamtune.metrics import SCALAR_METRICS, compute_metrics

# Labels: akiec=0 bcc=1 bkl=2 df=3 mel=4 nv=5 vasc=6.
# bkl, df and vasc are absent from y_true; mel is never predicted; vasc is predicted once.
Y_TRUE = np.array([0, 0, 1, 1, 4, 4, 5, 5])
Y_PRED = np.array([0, 1, 1, 1, 5, 6, 5, 5])


def _proba(y_pred: np.ndarray) -> np.ndarray:
    """0.4 on the predicted class, 0.1 on each of the other six (rows sum to 1)."""
    proba = np.full((len(y_pred), NUM_CLASSES), 0.1)
    proba[np.arange(len(y_pred)), y_pred] = 0.4
    return proba


# scikit-learn warns when a class is predicted but absent from y_true (vasc): the case under test.
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


@pytest.fixture(scope="module")
def metrics() -> dict:
    return compute_metrics(Y_TRUE, _proba(Y_PRED))


def test_per_class_scores(metrics: dict) -> None:
    # akiec: TP 1 (row 0), FN 1 (row 1), FP 0 -> P 1, R 1/2, F1 2*1*0.5/1.5 = 2/3
    # bcc:   TP 2 (rows 2, 3), FP 1 (row 1)  -> P 2/3, R 1, F1 2*(2/3)/(5/3) = 4/5
    # mel:   never predicted, 2 true         -> P 0 (0/0 -> 0), R 0/2, F1 0
    # nv:    TP 2 (rows 6, 7), FP 1 (row 4)  -> P 2/3, R 1, F1 4/5
    # vasc:  predicted once (row 5), no true -> P 0/1, R 0 (0/0 -> 0), F1 0
    # bkl, df: neither true nor predicted    -> all 0
    expected = {
        "akiec": (1.0, 0.5, 2 / 3),
        "bcc": (2 / 3, 1.0, 4 / 5),
        "bkl": (0.0, 0.0, 0.0),
        "df": (0.0, 0.0, 0.0),
        "mel": (0.0, 0.0, 0.0),
        "nv": (2 / 3, 1.0, 4 / 5),
        "vasc": (0.0, 0.0, 0.0),
    }
    for name, (precision, recall, f1) in expected.items():
        assert metrics[f"precision_{name}"] == pytest.approx(precision), name
        assert metrics[f"recall_{name}"] == pytest.approx(recall), name
        assert metrics[f"f1_{name}"] == pytest.approx(f1), name
    assert metrics["mel_recall"] == 0.0


def test_averaged_scores(metrics: dict) -> None:
    # macro F1 over the classes true or predicted (akiec, bcc, mel, nv, vasc):
    #   (2/3 + 4/5 + 0 + 4/5 + 0) / 5 = (34/15) / 5 = 34/75
    assert metrics["macro_f1"] == pytest.approx(34 / 75)
    # weighted by support (2 each for akiec, bcc, mel, nv; vasc 0):
    #   (2*2/3 + 2*4/5 + 0 + 2*4/5) / 8 = (68/15) / 8 = 17/30
    assert metrics["weighted_f1"] == pytest.approx(17 / 30)
    # correct rows 0, 2, 3, 6, 7
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    # mean recall over the classes in y_true: (1/2 + 1 + 0 + 1) / 4
    assert metrics["balanced_accuracy"] == pytest.approx(0.625)


def test_log_loss(metrics: dict) -> None:
    # probability of the true class: 0.4 on the 5 correct rows, 0.1 on the 3 wrong ones
    assert metrics["loss"] == pytest.approx(-(5 * math.log(0.4) + 3 * math.log(0.1)) / 8)


def test_auc_macro_over_present_classes(metrics: dict) -> None:
    # One-vs-rest per class present in y_true; a column scores 0.4 where that class was
    # predicted, else 0.1. AUC = P(positive > negative) + P(tie) / 2 over the 2 x 6 pairs:
    #   akiec: row 0 (0.4) beats 6 negatives, row 1 (0.1) ties 6      -> (6 + 3) / 12 = 3/4
    #   bcc:   rows 2, 3 (0.4) each beat 5 and tie row 1 (0.4)        -> 2 * 5.5 / 12 = 11/12
    #   mel:   every score is 0.1                                     -> 1/2
    #   nv:    rows 6, 7 (0.4) each beat 5 and tie row 4 (0.4)        -> 11/12
    # bkl, df, vasc have no positives and are left out: (9 + 11 + 6 + 11) / 12 / 4 = 37/48
    assert metrics["auc_macro"] == pytest.approx(37 / 48)


def test_confusion_matrix_rows_are_true_classes(metrics: dict) -> None:
    expected = [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    expected[0][0] = expected[0][1] = 1  # akiec: one right, one called bcc
    expected[1][1] = 2
    expected[4][5] = expected[4][6] = 1  # mel: called nv once, vasc once
    expected[5][5] = 2
    assert metrics["confusion_matrix"] == expected
    assert all(type(v) is int for row in metrics["confusion_matrix"] for v in row)


def test_keys_match_scalar_metrics_and_are_python_floats(metrics: dict) -> None:
    assert list(metrics) == [*SCALAR_METRICS, "confusion_matrix"]
    assert all(type(metrics[key]) is float for key in SCALAR_METRICS)
    assert len(SCALAR_METRICS) == 7 + 3 * len(CLASSES)
    assert len(set(SCALAR_METRICS)) == len(SCALAR_METRICS)


def test_given_loss_is_reported_unchanged() -> None:
    assert compute_metrics(Y_TRUE, _proba(Y_PRED), loss=0.25)["loss"] == 0.25


def test_perfect_predictions() -> None:
    y = np.arange(NUM_CLASSES).repeat(2)
    result = compute_metrics(y, _proba(y))
    for key in ("macro_f1", "balanced_accuracy", "weighted_f1", "accuracy", "auc_macro", "mel_recall"):
        assert result[key] == pytest.approx(1.0), key
    assert np.array_equal(result["confusion_matrix"], 2 * np.eye(NUM_CLASSES, dtype=int))


def test_auc_is_nan_with_a_single_class_in_y_true() -> None:
    y = np.array([5, 5, 5])
    assert math.isnan(compute_metrics(y, _proba(np.array([5, 4, 5])))["auc_macro"])


def test_proba_of_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"proba must have shape \(8, 7\), got \(8, 6\)"):
        compute_metrics(Y_TRUE, _proba(Y_PRED)[:, :6])
