"""A trial's best-epoch model as standalone files, without retraining.

The sweep keeps each trial's best-epoch checkpoint (Ray keeps it by score next to the latest,
and `trials.parquet` names it). `export` rebuilds the trial's model exactly as the trial built
it (same backbone, mode, seed and weights setting), loads that checkpoint's variables, and
writes what a user deploys or evaluates elsewhere:

- `model.keras`: the Keras model (uint8 RGB in, class probabilities out; its augmentation
  layers are the identity at inference);
- `saved_model/`: the same model as a TensorFlow SavedModel (`model.export`), for TF Serving
  and other TensorFlow runtimes;
- `model.json`: the trial's id, hyperparameters and training settings, the class order, the
  input size and its validation metrics at that epoch.

Unlike `hamtune refit`, nothing is retrained and no test image is touched: the exported model
is the one the table's validation scores describe.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from hamtune.errors import ExperimentError
from hamtune.evaluation.files import CONTRACT_FILE, MODEL_FILE, SAVED_MODEL_DIR
from hamtune.keys import OBJECTIVE

logger = logging.getLogger(__name__)


class ExportResult(NamedTuple):
    out: Path
    info: dict[str, Any]  # the content of model.json


def export(location: str, out: str, rank: int | None = None, trial_id: str | None = None) -> ExportResult:
    """Write the chosen trial's best-epoch model to `out` (a new or empty directory)."""
    from hamtune.results.analysis import load_results
    from hamtune.config import parse_sweep, to_dict
    from hamtune.training.device import configure_tensorflow
    from hamtune.evaluation.selection import (
        choose_trial, new_or_empty_dir, resolve_experiment, trial_params,
    )
    from hamtune.store.experiment import CONFIG_FILE
    from hamtune.labels import CLASSES
    from hamtune.store.tables import METRIC_COLUMNS
    from hamtune.training.trial import trial_model, trial_seed

    experiment = resolve_experiment(location)
    trial = choose_trial(load_results([experiment.uri]).trials, rank, trial_id)
    if pd.isna(trial["checkpoint"]):
        raise ExperimentError(f"trial {trial['trial_id']} has no checkpoint to export (status {trial['status']})")
    target = new_or_empty_dir(out)
    sweep = parse_sweep(json.loads(experiment.read_text(CONFIG_FILE)), source=f"{experiment.uri}/{CONFIG_FILE}")
    params = trial_params(trial)
    seed = trial_seed(sweep.search.seed, params, sweep.training)

    configure_tensorflow(1, None, mixed_precision=False)  # inference files: float32 whatever the trial used
    model = trial_model(params, sweep.training, sweep.data.image_size, seed)
    _load_checkpoint(str(trial["checkpoint"]), model, averaged=sweep.training.weight_averaging)

    info = {
        "experiment": experiment.uri, "trial_id": str(trial["trial_id"]),
        "params": sweep.training.shown_params(params),
        "mode": sweep.training.mode_for(params["model"]), "best_epoch": int(trial["best_epoch"]),
        "checkpoint": str(trial["checkpoint"]), "classes": list(CLASSES),
        "input": {"height": sweep.data.image_size, "width": sweep.data.image_size, "channels": 3,
                  "dtype": "uint8", "range": "0-255 RGB, resized to a square as hamtune's cache does"},
        "validation": {key: float(trial[key]) for key in METRIC_COLUMNS if pd.notna(trial[key])},
        "training": to_dict(sweep)["training"],
    }
    try:
        target.mkdir(parents=True, exist_ok=True)
        model.save(target / MODEL_FILE)
        model.export(str(target / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        (target / CONTRACT_FILE).write_text(json.dumps(info, indent=2))
    except OSError as error:
        raise ExperimentError(f"cannot write the exported model into {target}: {error}") from error
    return ExportResult(target, info)


def _load_checkpoint(location: str, model: Any, averaged: bool) -> None:
    """Load a trial checkpoint's model variables (a local path or a storage URI) into `model`,
    their moving averages where `averaged`."""
    from ray.tune import Checkpoint

    from hamtune.training.checkpoint import restore_weights

    try:
        with Checkpoint(location).as_directory() as directory:
            restore_weights(Path(directory), model, averaged)
    except FileNotFoundError as error:
        raise ExperimentError(f"the trial's checkpoint {location} is gone: {error}") from error


def summary(result: ExportResult) -> str:
    """What `hamtune export` prints."""
    info = result.info
    return (f"exported trial {info['trial_id']} ({info['params']['model']}, {info['mode']}) at its best epoch "
            f"{info['best_epoch']}: {OBJECTIVE.name} {info['validation'].get(OBJECTIVE.name, float('nan')):.4f}\n"
            f"wrote {result.out}/: {MODEL_FILE}, {SAVED_MODEL_DIR}/, {CONTRACT_FILE}")
