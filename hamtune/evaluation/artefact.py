"""The final model directory: one model whose outputs are calibrated probabilities, its contract and its card.

Everything a user deploys sits in one place: the model (TTA views, member models, temperature
scaling and the ensemble mean are all layers, so `.keras` and the SavedModel give exactly the
evaluated numbers), `model.json` (input size, uint8 RGB, class order, the melanoma threshold
and decision rule), `evaluation.json` (every number with its interval), the predictions behind
them, figures and `MODEL_CARD.md`. Before anything is written the assembled model is run on the
test images and must reproduce the evaluation's final probabilities.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hamtune.errors import ExperimentError
from hamtune.evaluation.crossval import CrossValidation
from hamtune.evaluation.files import (
    CARD_FILE,
    CONFUSION_FILE,
    CONTRACT_FILE,
    CV_FILE,
    EVALUATION_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    RELIABILITY_FILE,
    SAVED_MODEL_DIR,
)
from hamtune.evaluation.fitting import Fit
from hamtune.labels import CLASSES, MELANOMA

if TYPE_CHECKING:
    import keras

    from hamtune.config import SweepConfig
    from hamtune.data.prepared import PreparedData
    from hamtune.evaluation.types import Evaluation, Variant

logger = logging.getLogger(__name__)

FINAL_FILES = (MODEL_FILE, SAVED_MODEL_DIR, CONTRACT_FILE, EVALUATION_FILE, CV_FILE, PREDICTIONS_FILE,
               RELIABILITY_FILE, CONFUSION_FILE, CARD_FILE)
#: Largest difference allowed between the written model's test probabilities and the evaluation's.
REPRODUCTION_TOLERANCE = 1e-4
DECISION_RULE = (f"{MELANOMA} when p({MELANOMA}) >= thresholds.{MELANOMA}, otherwise the most probable other "
                 "class; `argmax` is the plain alternative")


def _member(model_file: bytes, name: str, views: str) -> keras.Model:
    from hamtune.evaluation.tta import with_tta
    from hamtune.training.models import load_model

    with tempfile.TemporaryDirectory(prefix="hamtune-member-") as tmp:
        (Path(tmp) / MODEL_FILE).write_bytes(model_file)
        model = load_model(Path(tmp) / MODEL_FILE, compile=False)  # no optimizer state in the final file
    model.name = name  # members of one architecture would otherwise share a layer name
    return with_tta(model, views)


def final_model(members: Sequence[tuple[bytes, float]], views: str) -> keras.Model:
    """The deployable model: each member (averaged over its TTA `views`), divided by its
    temperature (1 when calibration was dropped), averaged."""
    from hamtune.evaluation.ensemble import ensemble_model

    return ensemble_model([(_member(file, f"member_{i}", views), temperature)
                           for i, (file, temperature) in enumerate(members)], name="hamtune_final")


def _predict_test(model: keras.Model, sweep: SweepConfig, data: PreparedData) -> np.ndarray:
    from hamtune.data.cache import open_cache
    from hamtune.data.pipeline import make_dataset
    from hamtune.training.inference import make_predictor

    images = open_cache(data.index, data.image_size, data.cache_dir).images
    test = data.positions("test")
    return make_predictor(model)(make_dataset(images, test, data.labels(test), batch_size=sweep.training.batch_size))


def contract(report: dict[str, Any], image_size: int) -> dict[str, Any]:
    """model.json: what goes in, what comes out and how to decide."""
    final = next(row for row in report["variants"] if row["variant"] == report["final_variant"])
    return {
        "classes": list(CLASSES),
        "input": {"height": image_size, "width": image_size, "channels": 3, "dtype": "uint8",
                  "range": "0-255 RGB, the whole image resized to a square (bilinear, antialiased), as "
                           "hamtune's cache and `hamtune predict` do"},
        "output": "calibrated class probabilities in `classes` order (each row sums to 1)",
        "tta": report["tta"], "variant": final["variant"],
        "thresholds": {MELANOMA: final["mel_threshold"]},
        "mel_sensitivity_target": report["mel_sensitivity_target"],
        "decision": DECISION_RULE,
        "members": [{key: member[key] for key in ("trial_id", "params", "epochs", "temperature")}
                    for member in report["members"]],
        "experiment": report["experiment"],
    }


def write_final(target: Path, report: dict[str, Any], cv: CrossValidation, members: Sequence[tuple[Fit, float]],
                final: Variant, reliability_rows: Sequence[Variant], sweep: SweepConfig,
                data: PreparedData) -> Evaluation:
    """Assemble the final model from its (refit, temperature) members, check that it reproduces the
    evaluation's final probabilities on test, then write the directory."""
    from hamtune.results import plots
    from hamtune.config import to_dict
    from hamtune.training.device import configure_tensorflow
    from hamtune.evaluation.card import final_card
    from hamtune.evaluation.figures import reliability_diagram
    from hamtune.evaluation.types import Evaluation
    from hamtune.evaluation.refit import data_provenance, predictions_table
    from hamtune.evaluation.thresholds import decide
    from hamtune.metrics import compute_metrics
    from hamtune.sweep.run import versions

    configure_tensorflow(1, None, mixed_precision=False)  # inference files: float32 whatever the trials used
    model = final_model([(fit.model_file, temperature) for fit, temperature in members], report["tta"])
    logger.info("checking that the assembled final model (%s) reproduces the evaluated test probabilities",
                final.name)
    difference = float(np.abs(_predict_test(model, sweep, data) - final.test).max())
    if difference > REPRODUCTION_TOLERANCE:
        raise ExperimentError(f"the assembled final model does not reproduce the evaluated probabilities "
                              f"(max difference {difference:.2e}); nothing was written")
    test = data.index.table.iloc[data.positions("test")]
    y_test = test["label"].to_numpy()
    threshold = contract(report, data.image_size)["thresholds"][MELANOMA]
    report = {**report, "reproduction_max_difference": difference, "data": data_provenance(sweep, data),
              "config": to_dict(sweep), "versions": versions(),
              "confusion_matrix": compute_metrics(y_test, final.test)["confusion_matrix"]}
    logger.info("writing the final model, its SavedModel, contract, evaluation and card into %s", target)
    try:
        target.mkdir(parents=True, exist_ok=True)
        model.save(target / MODEL_FILE)
        model.export(str(target / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        (target / CONTRACT_FILE).write_text(json.dumps(contract(report, data.image_size), indent=2))
        (target / EVALUATION_FILE).write_text(json.dumps(report, indent=2))
        cv.folds.to_parquet(target / CV_FILE, index=False)
        predictions_table(test, y_test, final.test).assign(
            y_pred_mel_threshold=decide(final.test, threshold)).to_parquet(target / PREDICTIONS_FILE, index=False)
        plots.save(reliability_diagram(y_test, {row.name: row.test for row in reliability_rows}),
                   target / RELIABILITY_FILE)
        plots.save(plots.confusion_matrix(np.array(report["confusion_matrix"]), f"Test confusion matrix: "
                                          f"{final.name}"), target / CONFUSION_FILE)
        (target / CARD_FILE).write_text(final_card(report, cv))
    except OSError as error:
        raise ExperimentError(f"cannot write the final model into {target}: {error}") from error
    return Evaluation(target, report)
