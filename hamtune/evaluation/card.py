"""MODEL_CARD.md for a refit and for the final model: what was trained on what, every test number
with its interval, how the model was chosen, and the data's licence and credit."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from hamtune.evaluation.crossval import CrossValidation
from hamtune.evaluation.scoring import VARIANT_SCORES
from hamtune.keys import OBJECTIVE
from hamtune.labels import CLASSES, MELANOMA
from hamtune.results.report import markdown_table

CARD_METRICS = ("macro_f1", "balanced_accuracy", "mel_recall", "accuracy", "weighted_f1", "auc_macro", "loss")

USE_AND_CREDIT = """## Intended use and limitations
Research on dermoscopic image classification only. Not a medical device and not validated for
diagnosis: rare classes (df, vasc, akiec) have few test lesions, so their scores are noisy.

## Licence and credit
HAM10000: Tschandl P., Rosendahl C., Kittler H., "The HAM10000 dataset, a large collection of
multi-source dermatoscopic images of common pigmented skin lesions", Scientific Data 5, 180161
(2018), published under CC BY-NC 4.0. Models trained on it inherit its non-commercial terms."""


def data_section(data: dict[str, Any], test_images: int) -> str:
    source = ("synthetic HAM10000-shaped images (hamtune's generator), not real lesions" if data["synthetic"]
              else f"{data['root']} ({data['format']} layout)")
    return f"""## Data
- Source: {source}.
- Dataset fingerprint `{data['fingerprint']}`, lesion-grouped split with seed {data['split_seed']}.
- Test split: {test_images} images that no trial of the sweep ever saw; evaluated once."""


def _versions(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in report["versions"].items())


def _settings(params: dict[str, Any]) -> str:
    """"model=densenet121, learning_rate=0.001, ...": a hyperparameter that does not apply (None,
    the unfreeze depth from scratch) is left out."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items() if v is not None)


def refit_card(report: dict[str, Any]) -> str:
    """A refit's MODEL_CARD.md: what was trained on what, how it scored on test, what it must not be used for."""

    test, ci, data, params = report["test"], report["confidence_intervals"], report["data"], report["params"]
    level = f"{ci['confidence']:.0%}"
    scores = pd.DataFrame([
        {"metric": name, "test": test[name],
         f"{level} CI": f"{ci[name]['low']:.4f} to {ci[name]['high']:.4f}" if name in ci else ""}
        for name in CARD_METRICS
    ])
    support = [sum(row) for row in report["confusion_matrix"]]
    classes = pd.DataFrame({"class": list(CLASSES), "support": support, **{
        kind: [test[f"{kind}_{c}"] for c in CLASSES] for kind in ("precision", "recall", "f1")}})
    settings = _settings(params)

    return f"""# Model card: {params['model']} (trial {report['trial_id']})

## Model
- Backbone `{params['model']}` with a dropout + softmax head over the 7 HAM10000 classes;
  input {data['image_size']} px RGB uint8.
- Hyperparameters (chosen by the sweep on validation macro F1): {settings}.
- Refit on train+val ({report['train_images']} images) for {report['epochs']} epoch(s)
  (from {report['epochs_from']}); seed {report['seed']}.
- Training settings: `{json.dumps(report['config']['training'])}`.

{data_section(data, report['test_images'])}

## Test results
{markdown_table(scores)}

Intervals: {ci['method']}, {ci['resamples']} resamples, seed {ci['seed']}.
Validation macro F1 of the chosen trial during the sweep: {report['validation'][OBJECTIVE.name]:.4f}.

{markdown_table(classes)}

## Provenance
- Experiment: `{report['experiment']}`.
- Versions at refit: {_versions(report)}.

{USE_AND_CREDIT}
"""


def _estimate(value: dict[str, float]) -> str:
    return f"{value['value']:.4f} ({value['low']:.4f} to {value['high']:.4f})"


def final_card(report: dict[str, Any], cv: CrossValidation) -> str:
    """The final model's MODEL_CARD.md: the choice by cross-validation, each step's effect on test, the threshold."""
    data = report["data"]
    final = next(row for row in report["variants"] if row["variant"] == report["final_variant"])
    steps = pd.DataFrame([{"variant": row["variant"], **{name: _estimate(row["scores"][name]) for name in VARIANT_SCORES},
                           f"{MELANOMA} threshold": row["mel_threshold"]} for row in report["variants"]])
    ranking = cv.summary[["config", "trial_id", "model", "sweep_rank", OBJECTIVE.name, "epochs", "cv_macro_f1_mean",
                          "cv_macro_f1_std", "cv_balanced_accuracy_mean", "cv_rank"]]
    members = "\n".join(
        f"  - trial {m['trial_id']}: {_settings(m['params'])}; {m['epochs']} epoch(s), seed {m['seed']}, "
        f"temperature {m['temperature']:.3f}" for m in report["members"])
    calibration = report["calibration"]
    views = {"none": "", "flips": "the 4 flip views (mirror images, upside down and both)",
             "dihedral": "the 8 dihedral views (rotations and mirror images)"}[report["tta"]]
    decisions = "\n".join(f"- {step['decision']}" for step in report["steps"])
    notes = "".join(f"\n- {note}" for note in report["ensemble_notes"])
    return f"""# Model card: hamtune final model ({final['variant']})

## Model
- Input: {data['image_size']}×{data['image_size']} RGB uint8 (`model.json` has the full contract); output:
  calibrated probabilities of {', '.join(CLASSES)}.
- {f'Test-time augmentation over {views} inside the model. ' if views else ''}Members, each refitted on all
  {report['train_val_images']} train+val images for its trial's best-epoch count and divided by its temperature:
{members}
- Decision: {MELANOMA} when p({MELANOMA}) ≥ {final['mel_threshold']:.4f} (chosen on out-of-fold predictions for a
  sensitivity of {report['mel_sensitivity_target']:.2f}; it reached {final['mel_sensitivity_out_of_fold']:.4f} out of fold), otherwise the most
  probable other class.
- Training settings: `{json.dumps(report['config']['training'])}`.

## How it was chosen
The top {report['top']} trials of the sweep by validation macro F1 were each retrained on {report['folds']}
lesion-grouped, diagnosis-stratified folds of train+val and ranked by mean out-of-fold macro F1;
the sweep's best is replaced only by a configuration ahead of it on the same folds by more than the
paired difference's standard error: {report['cv_ranking']}.

{markdown_table(ranking)}

Each optional step was kept only where it improved its out-of-fold score (never test), unless forced:
{decisions}{notes}

Calibration: {calibration['method']}; out-of-fold ECE {calibration['out_of_fold_ece_before']:.4f} before,
{calibration['out_of_fold_ece_after']:.4f} after.

{data_section(data, report['test_images'])}

## Test results, step by step
Each value with its 95% interval (percentile bootstrap over test lesions, 1000 resamples). The
row "{final['variant']}" is this model; the others are scored for the record. `mel_sensitivity` and `mel_specificity` use the melanoma threshold of
each row (chosen out of fold); `mel_recall_argmax` and `mel_specificity_argmax` are the plain
argmax rule's.

{markdown_table(steps)}

## Provenance
- Experiment: `{report['experiment']}`.
- Versions: {_versions(report)}.
- The written model reproduced these test probabilities to {report['reproduction_max_difference']:.1e}.

{USE_AND_CREDIT}
"""
