"""The final model: one chosen configuration retrained on train+val and evaluated once on test.

The sweep chose the configuration and its epoch count on the validation split; the test split
was never seen by any trial. Refitting on train+val for the trial's best epoch count (the usual
recipe: more data, the same schedule) and scoring test exactly once gives a number that was not
used for any choice. Training is the trial's own code (`hamtune.trainable.train_epochs`), run
in this process or, like a trial, as a Ray task with the trial's resources.

Confidence intervals resample *lesions* (with all their images), not images: several views of
one lesion are not independent, and an image bootstrap would give intervals that are too narrow.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score

from hamtune.analysis import load_results, rank_trials
from hamtune.errors import ConfigError, DataError, ExperimentError
from hamtune.experiment import CONFIG_FILE, Experiment, experiment_for
from hamtune.labels import CLASSES
from hamtune.metrics import compute_metrics

if TYPE_CHECKING:
    from hamtune.config import SweepConfig
    from hamtune.data.prepared import PreparedData

logger = logging.getLogger(__name__)

SELECTION_METRIC = "val_macro_f1"  # what the sweep optimised: the ranking `--rank` refers to
MODEL_FILE = "model.keras"
METRICS_FILE = "test_metrics.json"
PREDICTIONS_FILE = "test_predictions.parquet"
CONFUSION_FILE = "confusion_matrix.png"
CARD_FILE = "MODEL_CARD.md"
OUTPUT_FILES = (MODEL_FILE, METRICS_FILE, PREDICTIONS_FILE, CONFUSION_FILE, CARD_FILE)
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
VALIDATION_SHOWN = ("val_balanced_accuracy", "val_mel_recall")
CARD_METRICS = ("macro_f1", "balanced_accuracy", "mel_recall", "accuracy", "weighted_f1", "auc_macro", "loss")
#: Same definitions as `compute_metrics` (macro over the classes in y_true or the predictions).
INTERVAL_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "macro_f1": lambda y, p: f1_score(y, p, average="macro", zero_division=0),
    "balanced_accuracy": balanced_accuracy_score,
}


class RefitResult(NamedTuple):
    out: Path
    trial: dict[str, Any]  # the chosen trial's row
    epochs: int
    report: dict[str, Any]  # the content of test_metrics.json


def open_experiment(location: str) -> Experiment:
    """The hamtune experiment at `location` (a directory or URI); refuses anything else."""
    if "://" in location and not location.startswith("file://"):
        parent, _, name = location.rstrip("/").rpartition("/")
    else:
        path = Path(location.removeprefix("file://")).expanduser().resolve()
        parent, name = str(path.parent), path.name
    experiment = experiment_for(parent, name)
    if not experiment.is_hamtune():
        raise ExperimentError(f"{location} is not a hamtune experiment (no hamtune.json in it)")
    return experiment


def choose_trial(trials: pd.DataFrame, rank: int | None = None, trial_id: str | None = None) -> pd.Series:
    """The trial to refit: `trial_id` (or its directory name) if given, else the one at `rank` (default 1)."""
    ranked, _ = rank_trials(trials, SELECTION_METRIC)
    if trial_id is not None:
        trial_id = trial_id.removeprefix("trial_")
        match = ranked[ranked["trial_id"] == trial_id]
        if match.empty:
            known = ", ".join(ranked["trial_id"].astype(str).head(10))
            raise ExperimentError(f"--trial {trial_id!r} is not in this experiment (trials: {known})")
        if pd.isna(match.iloc[0]["rank"]):
            raise ExperimentError(f"--trial {trial_id!r} has no {SELECTION_METRIC} (status "
                                  f"{match.iloc[0]['status']}): nothing says how long to train it")
        return match.iloc[0]
    count = int(ranked["rank"].count())
    rank = 1 if rank is None else rank
    if not 1 <= rank <= count:
        raise ConfigError(f"--rank must be in [1, {count}] (ranked trials in this experiment), got {rank}")
    return ranked.iloc[rank - 1]


def lesion_bootstrap(y_true: np.ndarray, y_pred: np.ndarray, lesions: np.ndarray,
                     score: Callable[[np.ndarray, np.ndarray], float], resamples: int = BOOTSTRAP_RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `score` over resamples of whole lesions (drawn with replacement)."""
    codes, _ = pd.factorize(pd.Series(lesions))
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    with warnings.catch_warnings():  # a resample may lack a class; sklearn warns, the score is defined
        warnings.simplefilter("ignore")
        for i in range(resamples):
            rows = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
            values[i] = score(y_true[rows], y_pred[rows])
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _out_dir(experiment: Experiment, trial_id: str, out: str | None) -> Path:
    if out is None:
        if experiment.is_remote:
            raise ExperimentError(f"{experiment.uri} is remote: pass --out DIR for the refit's files")
        out = f"{experiment.uri}/refit_{trial_id}"
    return new_or_empty_dir(out)


def new_or_empty_dir(out: str) -> Path:
    """`--out` resolved; refused when it exists as anything but an empty directory, so nothing is overwritten."""
    path = Path(out).expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExperimentError(f"{path} already exists and is not an empty directory: choose another --out or remove it")
    return path


def fit_and_predict(params: dict[str, Any], sweep: SweepConfig, data: PreparedData, epochs: int, cpus: float,
                    use_gpu: bool | None, seed: int) -> tuple[bytes, np.ndarray, float]:
    """Train on train+val for `epochs` with the trial's own loop, then predict the test split once.

    Returns the saved `.keras` file's bytes (so a Ray task can hand the model back to the
    driver), the test probabilities (n, 7) and the training seconds.
    """
    from hamtune.data.pipeline import make_dataset
    from hamtune.trainable import build_trial_model, make_predictor, train_epochs

    fit_pos = np.sort(np.concatenate([data.positions("train"), data.positions("val")]))
    model, images = build_trial_model(params, sweep.training, data, cpus, use_gpu=use_gpu, seed=seed)
    logger.info("refitting %s on %d train+val images for %d epoch(s)", params["model"], len(fit_pos), epochs)
    seconds = 0.0
    labels = data.labels(fit_pos)
    for result in train_epochs(model, params, sweep.training, images, fit_pos, labels, seed, stop=epochs):
        seconds += result.seconds
        logger.info("epoch %d (phase %d): train_loss %.4f", result.epoch, result.phase, result.train_loss)
    test_pos = data.positions("test")
    test_ds = make_dataset(images, test_pos, data.labels(test_pos), batch_size=sweep.training.batch_size)
    proba = make_predictor(model)(test_ds)  # the trials' own evaluation path
    with tempfile.TemporaryDirectory(prefix="hamtune-refit-") as tmp:
        model.save(Path(tmp) / MODEL_FILE)
        return (Path(tmp) / MODEL_FILE).read_bytes(), proba, seconds


def _ray_task(params: dict[str, Any], sweep: SweepConfig, data: PreparedData, epochs: int,
              seed: int) -> tuple[bytes, np.ndarray, float]:
    """`fit_and_predict` inside a Ray task, on the CPUs and GPUs Ray gave it (like a trial)."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return fit_and_predict(params, sweep, data, epochs, cpus, bool(ray.get_gpu_ids()), seed)


def _on_ray(address: str, params: dict[str, Any], sweep: SweepConfig, data: PreparedData, epochs: int,
            seed: int) -> tuple[bytes, np.ndarray, float]:
    """Run the refit as one Ray task with the trial's resources; `address` "local" starts a private Ray."""
    import ray

    from hamtune.cluster import init_ray

    init_ray(None if address == "local" else address)
    need = sweep.resources.for_model(params["model"])
    try:
        task = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=0)(_ray_task)
        logger.info("refit runs as a Ray task with %g CPU and %g GPU", need.cpus, need.gpus)
        return ray.get(task.remote(params, sweep, data, epochs, seed))
    finally:
        ray.shutdown()


def score_test_split(y_true: np.ndarray, proba: np.ndarray, lesions: np.ndarray, seed: int) -> dict[str, Any]:
    """The sweep's metric set on test, its confusion matrix and lesion-bootstrap intervals."""
    metrics = compute_metrics(y_true, proba)
    matrix = metrics.pop("confusion_matrix")
    y_pred = proba.argmax(axis=1)
    intervals = {name: dict(zip(("low", "high"), lesion_bootstrap(y_true, y_pred, lesions, score, seed=seed)))
                 for name, score in INTERVAL_SCORES.items()}
    return {
        "test": metrics, "confusion_matrix": matrix,
        "confidence_intervals": {
            **intervals, "method": "percentile bootstrap over test lesions (all images of a drawn lesion)",
            "confidence": CONFIDENCE, "resamples": BOOTSTRAP_RESAMPLES, "seed": seed,
        },
    }


def refit(location: str, rank: int | None = None, trial_id: str | None = None, epochs: int | None = None,
          out: str | None = None, cpus: float | None = None, address: str | None = None) -> RefitResult:
    """Retrain the chosen trial's configuration on train+val, evaluate it once on test, write it all.

    Without `address` it runs in this process on its devices (a GPU when TensorFlow sees one)
    with `cpus` threads (default: every core this process may use). With `address` (auto,
    host:port, or "local" for a private instance) it runs as one Ray task with the resources a
    trial of that model had; the files are written here, by the driver.
    """
    from hamtune.cluster import check_address
    from hamtune.config import parse_sweep, to_dict
    from hamtune.sweep import versions
    from hamtune.data.prepared import prepare_saved
    from hamtune.trainable import PARAMS, trial_seed

    if cpus is not None and not cpus > 0:  # NaN included
        raise ConfigError(f"--cpus must be > 0, got {cpus}")
    check_address(address)
    experiment = open_experiment(location)
    results = load_results([experiment.uri], SELECTION_METRIC)
    trial = choose_trial(results.trials, rank, trial_id)
    count = int(trial["best_epoch"]) if epochs is None and pd.notna(trial["best_epoch"]) else epochs
    if count is None or count < 1:
        raise ConfigError(f"--epochs must be >= 1, got {count}")
    target = _out_dir(experiment, str(trial["trial_id"]), out)
    config = json.loads(experiment.read_text(CONFIG_FILE))
    sweep = parse_sweep(config, source=f"{experiment.uri}/{CONFIG_FILE}")
    data = prepare_saved(sweep.data, experiment, needs="refit needs the data the sweep chose on")
    test = data.index.table.iloc[data.positions("test")]
    if test.empty:
        raise DataError(f"the split of {experiment.uri} has no test images (data.test_fraction was 0?)")

    params = {key: trial[key].item() if hasattr(trial[key], "item") else trial[key] for key in PARAMS}
    seed = trial_seed(sweep.search.seed, params)  # as the trial trained
    if address is None:
        cpus = cpus or len(os.sched_getaffinity(0))
        model_file, proba, seconds = fit_and_predict(params, sweep, data, count, cpus, None, seed)
    else:
        model_file, proba, seconds = _on_ray(address, params, sweep, data, count, seed)
    y_test = test["label"].to_numpy()
    meta = next(iter(results.metadata.values()))
    report = {
        "experiment": experiment.uri, "trial_id": str(trial["trial_id"]), "params": params, "epochs": count,
        "epochs_from": "the trial's best epoch" if epochs is None else "--epochs",
        "seed": seed, "train_seconds": seconds, "test_images": len(test),
        "train_images": int(sum(len(data.positions(name)) for name in ("train", "val"))),
        **score_test_split(y_test, proba, test["lesion_id"].to_numpy(), seed),
        "validation": {key: float(trial[key]) for key in (SELECTION_METRIC, *VALIDATION_SHOWN)},
        "data": {
            "root": str(data.index.root), "format": data.index.format, "synthetic": sweep.data.dir is None,
            "fingerprint": data.index.fingerprint, "split_seed": data.split_seed, "image_size": data.image_size,
        },
        "config": to_dict(sweep), "versions": versions(),
        "sweep_versions": json.loads(meta.get("versions", "{}")),
    }
    try:
        target.mkdir(parents=True, exist_ok=True)
        _write(target, model_file, test, y_test, proba, report)
    except OSError as error:
        raise ExperimentError(f"cannot write the refit into {target}: {error}") from error
    return RefitResult(target, trial.to_dict(), count, report)


def _write(target: Path, model_file: bytes, test: pd.DataFrame, y_test: np.ndarray, proba: np.ndarray,
           report: dict[str, Any]) -> None:
    from hamtune import plots

    (target / MODEL_FILE).write_bytes(model_file)
    predictions = test[["image_id", "lesion_id"]].reset_index(drop=True).assign(
        y_true=y_test, y_pred=proba.argmax(axis=1))
    for i, name in enumerate(CLASSES):
        predictions[f"prob_{name}"] = proba[:, i]
    predictions.to_parquet(target / PREDICTIONS_FILE, index=False)
    (target / METRICS_FILE).write_text(json.dumps(report, indent=2))
    title = f"Test confusion matrix: {report['params']['model']}, trial {report['trial_id']}"
    plots.save(plots.confusion_matrix(np.array(report["confusion_matrix"]), title), target / CONFUSION_FILE)
    (target / CARD_FILE).write_text(model_card(report))


def model_card(report: dict[str, Any]) -> str:
    """MODEL_CARD.md: what was trained on what, how it scored on test, and what it must not be used for."""
    from hamtune.report import markdown_table

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
    settings = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    source = ("synthetic HAM10000-shaped images (hamtune's generator), not real lesions" if data["synthetic"]
              else f"{data['root']} ({data['format']} layout)")
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return f"""# Model card: {params['model']} (trial {report['trial_id']})

## Model
- Backbone `{params['model']}` with a dropout + softmax head over the 7 HAM10000 classes;
  input {data['image_size']} px RGB uint8.
- Hyperparameters (chosen by the sweep on validation macro F1): {settings}.
- Refit on train+val ({report['train_images']} images) for {report['epochs']} epoch(s)
  (from {report['epochs_from']}); seed {report['seed']}.
- Training settings: `{json.dumps(report['config']['training'])}`.

## Data
- Source: {source}.
- Dataset fingerprint `{data['fingerprint']}`, lesion-grouped split with seed {data['split_seed']}.
- Test split: {report['test_images']} images that no trial of the sweep ever saw; evaluated once.

## Test results
{markdown_table(scores)}

Intervals: {ci['method']}, {ci['resamples']} resamples, seed {ci['seed']}.
Validation macro F1 of the chosen trial during the sweep: {report['validation']['val_macro_f1']:.4f}.

{markdown_table(classes)}

## Provenance
- Experiment: `{report['experiment']}`.
- Versions at refit: {versions}.

## Intended use and limitations
Research on dermoscopic image classification only. Not a medical device and not validated for
diagnosis: rare classes (df, vasc, akiec) have few test lesions, so their scores are noisy.

## Licence and credit
HAM10000: Tschandl P., Rosendahl C., Kittler H., "The HAM10000 dataset, a large collection of
multi-source dermatoscopic images of common pigmented skin lesions", Scientific Data 5, 180161
(2018), published under CC BY-NC 4.0. Models trained on it inherit its non-commercial terms.
"""


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
          for name in INTERVAL_SCORES),
        f"  test melanoma recall {test['mel_recall']:.4f}, accuracy {test['accuracy']:.4f}",
        f"  (validation macro F1 of the trial: {report['validation'][SELECTION_METRIC]:.4f})",
        f"wrote {result.out}/: {', '.join(OUTPUT_FILES)}",
    ]
    return "\n".join(lines)
