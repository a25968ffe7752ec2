"""One model variant scored on test: every number with its lesion-bootstrap interval.

Each variant brings its test probabilities and its out-of-fold counterpart; the melanoma
threshold is chosen on the out-of-fold one for the requested sensitivity, then applied to test.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hamtune.evaluation.calibration import expected_calibration_error
from hamtune.evaluation.intervals import lesion_bootstrap, score_interval
from hamtune.evaluation.thresholds import MELANOMA_LABEL, decide, sensitivity, sensitivity_threshold, specificity
from hamtune.metrics import HEADLINE_SCORES

#: What every variant reports, in the order tables show it.
VARIANT_SCORES = ("macro_f1", "balanced_accuracy", "mel_sensitivity", "mel_specificity", "mel_recall_argmax",
                  "mel_specificity_argmax", "ece")


def score_variant(y_test: np.ndarray, proba: np.ndarray, lesions: np.ndarray, y_oof: np.ndarray,
                  proba_oof: np.ndarray, mel_sensitivity: float, seed: int) -> dict[str, Any]:
    """Argmax scores, the melanoma operating point chosen out of fold, and ECE, each as value + interval."""
    threshold = sensitivity_threshold(proba_oof[:, MELANOMA_LABEL], y_oof == MELANOMA_LABEL, mel_sensitivity)
    y_pred = proba.argmax(axis=1)
    at_threshold = decide(proba, threshold)
    scores: dict[str, Any] = {name: score_interval(y_test, y_pred, lesions, score, seed)
                              for name, score in HEADLINE_SCORES.items()}
    # Melanoma recall at the threshold chosen out of fold, not at argmax as mel_recall(_argmax) is.
    scores["mel_sensitivity"] = score_interval(y_test, at_threshold, lesions, sensitivity, seed)
    scores["mel_specificity"] = score_interval(y_test, at_threshold, lesions, specificity, seed)
    # compute_metrics' mel_recall, but NaN (not 0) without melanomas, so such resamples drop out.
    scores["mel_recall_argmax"] = score_interval(y_test, y_pred, lesions, sensitivity, seed)
    scores["mel_specificity_argmax"] = score_interval(y_test, y_pred, lesions, specificity, seed)
    low, high = lesion_bootstrap(lesions, lambda rows: expected_calibration_error(y_test[rows], proba[rows]), seed=seed)
    scores["ece"] = {"value": expected_calibration_error(y_test, proba), "low": low, "high": high}
    oof_sensitivity = sensitivity(y_oof, decide(proba_oof, threshold))
    return {"scores": scores, "mel_threshold": threshold, "mel_sensitivity_out_of_fold": oof_sensitivity}
