"""The final model of one configuration: retrained on train+val and evaluated once on test.

The sweep chose the configuration and its epoch count on the validation split; the test split
was never seen by any trial. Refitting on train+val for the trial's best epoch count (the usual
recipe: more data, the same schedule) and scoring test exactly once gives a number that was not
used for any choice. `hamtune evaluate` goes further: cross-validation of several
configurations, TTA, calibration, ensembles and an operating point (`hamtune.evaluation.evaluate`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from hamtune.results.analysis import load_results
from hamtune.errors import ConfigError, DataError, ExperimentError
from hamtune.evaluation.files import CARD_FILE, CONFUSION_FILE, METRICS_FILE, MODEL_FILE, PREDICTIONS_FILE
from hamtune.evaluation.fitting import check_cpus, FitJob, run_fits
from hamtune.evaluation.intervals import BOOTSTRAP_RESAMPLES, CONFIDENCE, METHOD, score_interval
from hamtune.evaluation.selection import (
    choose_trial, new_or_empty_dir, resolve_experiment, trial_params,
)
from hamtune.store.experiment import CONFIG_FILE, ExperimentDir
from hamtune.labels import CLASSES
from hamtune.metrics import HEADLINE_SCORES, compute_metrics
from hamtune.keys import OBJECTIVE

if TYPE_CHECKING:
    from hamtune.config import SweepConfig
    from hamtune.data.prepared import PreparedData

OUTPUT_FILES = (MODEL_FILE, METRICS_FILE, PREDICTIONS_FILE, CONFUSION_FILE, CARD_FILE)
VALIDATION_SHOWN = ("val_balanced_accuracy", "val_mel_recall")


class RefitResult(NamedTuple):
    out: Path
    trial: dict[str, Any]  # the chosen trial's row
    epochs: int
    report: dict[str, Any]  # the content of test_metrics.json


def _out_dir(experiment: ExperimentDir, trial_id: str, out: str | None) -> Path:
    if out is None:
        if experiment.is_remote:
            raise ExperimentError(f"{experiment.uri} is remote: pass --out DIR for the refit's files")
        out = f"{experiment.uri}/refit_{trial_id}"
    return new_or_empty_dir(out)


def score_test_split(y_true: np.ndarray, proba: np.ndarray, lesions: np.ndarray, seed: int) -> dict[str, Any]:
    """The sweep's metric set on test, its confusion matrix and lesion-bootstrap intervals."""
    metrics = compute_metrics(y_true, proba)
    matrix = metrics.pop("confusion_matrix")
    y_pred = proba.argmax(axis=1)
    intervals = {}
    for name, score in HEADLINE_SCORES.items():
        estimate = score_interval(y_true, y_pred, lesions, score, seed=seed)
        intervals[name] = {"low": estimate["low"], "high": estimate["high"]}
    return {
        "test": metrics, "confusion_matrix": matrix,
        "confidence_intervals": {**intervals, "method": METHOD, "confidence": CONFIDENCE,
                                 "resamples": BOOTSTRAP_RESAMPLES, "seed": seed},
    }


def saved_sweep(experiment: ExperimentDir, needs: str) -> tuple[SweepConfig, PreparedData]:
    """The experiment's sweep config and its data, refused if the data changed or has no test split."""
    from hamtune.config import parse_sweep
    from hamtune.data.prepared import prepare_saved

    sweep = parse_sweep(json.loads(experiment.read_text(CONFIG_FILE)), source=f"{experiment.uri}/{CONFIG_FILE}")
    data = prepare_saved(sweep.data, experiment, needs=needs)
    if not len(data.positions("test")):
        raise DataError(f"the split of {experiment.uri} has no test images (data.test_fraction was 0?)")
    return sweep, data


def refit(location: str, rank: int | None = None, trial_id: str | None = None, epochs: int | None = None,
          out: str | None = None, cpus: float | None = None, address: str | None = None) -> RefitResult:
    """Retrain the chosen trial's configuration on train+val, evaluate it once on test, write it all.

    Without `address` it runs in this process on its devices (a GPU when TensorFlow sees one)
    with `cpus` threads (default: every core this process may use). With `address` (auto,
    host:port, or "local" for a private instance) it runs as one Ray task with the resources a
    trial of that model had; the files are written here, by the driver.
    """
    from hamtune.sweep.cluster import check_address
    from hamtune.config import to_dict
    from hamtune.sweep.run import versions
    from hamtune.training.trial import trial_seed

    check_cpus(cpus)
    check_address(address)
    experiment = resolve_experiment(location)
    results = load_results([experiment.uri])
    trial = choose_trial(results.trials, rank, trial_id)
    count = int(trial["best_epoch"]) if epochs is None and pd.notna(trial["best_epoch"]) else epochs
    if count is None or count < 1:
        raise ConfigError(f"--epochs must be >= 1, got {count}")
    target = _out_dir(experiment, str(trial["trial_id"]), out)
    sweep, data = saved_sweep(experiment, "refit needs the data the sweep chose on")
    test = data.index.table.iloc[data.positions("test")]

    params = trial_params(trial)
    seed = trial_seed(sweep.search.seed, params, sweep.training)  # as the trial trained
    fit_pos = np.sort(np.concatenate([data.positions("train"), data.positions("val")]))
    job = FitJob(f"refit of trial {trial['trial_id']}", params, count, seed, fit_pos, data.positions("test"),
                 keep_model=True)
    [fit] = run_fits([job], sweep, data, cpus or len(os.sched_getaffinity(0)), address)
    y_test = test["label"].to_numpy()
    meta = next(iter(results.metadata.values()))
    report = {
        "experiment": experiment.uri, "trial_id": str(trial["trial_id"]),
        "params": sweep.training.shown_params(params), "epochs": count,
        "epochs_from": "the trial's best epoch" if epochs is None else "--epochs",
        "seed": seed, "train_seconds": fit.seconds, "test_images": len(test), "train_images": len(fit_pos),
        **score_test_split(y_test, fit.proba, test["lesion_id"].to_numpy(), seed),
        "validation": {key: float(trial[key]) for key in (OBJECTIVE.name, *VALIDATION_SHOWN)},
        "data": data_provenance(sweep, data),
        "config": to_dict(sweep), "versions": versions(),
        "sweep_versions": json.loads(meta.get("versions", "{}")),
    }
    try:
        target.mkdir(parents=True, exist_ok=True)
        _write(target, fit.model_file, test, y_test, fit.proba, report)
    except OSError as error:
        raise ExperimentError(f"cannot write the refit into {target}: {error}") from error
    return RefitResult(target, trial.to_dict(), count, report)


def data_provenance(sweep: SweepConfig, data: PreparedData) -> dict[str, Any]:
    """Where the images came from and how they were split: what a model card must say."""
    return {"root": str(data.index.root), "format": data.index.format, "synthetic": sweep.data.dir is None,
            "fingerprint": data.index.fingerprint, "split_seed": data.split_seed, "image_size": data.image_size}


def predictions_table(test: pd.DataFrame, y_test: np.ndarray, proba: np.ndarray,
                      y_pred: np.ndarray | None = None) -> pd.DataFrame:
    """One row per test image: ids, true and predicted label, and the probability of every class."""
    table = test[["image_id", "lesion_id"]].reset_index(drop=True).assign(
        y_true=y_test, y_pred=proba.argmax(axis=1) if y_pred is None else y_pred)
    for i, name in enumerate(CLASSES):
        table[f"prob_{name}"] = proba[:, i]
    return table


def _write(target: Path, model_file: bytes, test: pd.DataFrame, y_test: np.ndarray, proba: np.ndarray,
           report: dict[str, Any]) -> None:
    from hamtune.results import plots
    from hamtune.evaluation.card import refit_card

    (target / MODEL_FILE).write_bytes(model_file)
    predictions_table(test, y_test, proba).to_parquet(target / PREDICTIONS_FILE, index=False)
    (target / METRICS_FILE).write_text(json.dumps(report, indent=2))
    title = f"Test confusion matrix: {report['params']['model']}, trial {report['trial_id']}"
    plots.save(plots.confusion_matrix(np.array(report["confusion_matrix"]), title), target / CONFUSION_FILE)
    (target / CARD_FILE).write_text(refit_card(report))


def probabilities(predictions: pd.DataFrame) -> np.ndarray:
    """The (n, 7) class probabilities stored in a `test_predictions.parquet`."""
    return predictions[[f"prob_{name}" for name in CLASSES]].to_numpy()


def summary(result: RefitResult) -> str:
    """What `hamtune refit` prints."""
    report = result.report
    test, ci = report["test"], report["confidence_intervals"]
    lines = [
        f"refit trial {report['trial_id']} ({report['params']['model']}) on train+val "
        f"({report['train_images']} images) for {result.epochs} epoch(s); "
        f"one evaluation on {report['test_images']} test images:",
        *(f"  test {name.replace('_', ' ')} {test[name]:.4f}  "
          f"({ci['confidence']:.0%} CI {ci[name]['low']:.4f} to {ci[name]['high']:.4f})"
          for name in HEADLINE_SCORES),
        f"  test melanoma recall {test['mel_recall']:.4f}, accuracy {test['accuracy']:.4f}",
        f"  (validation macro F1 of the trial: {report['validation'][OBJECTIVE.name]:.4f})",
        f"wrote {result.out}/: {', '.join(OUTPUT_FILES)}",
    ]
    return "\n".join(lines)
