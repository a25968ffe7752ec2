"""Hand-built result tables, written through `hamtune.store.tables` exactly as a sweep writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hamtune.labels import CLASSES
from hamtune.store.tables import EPOCHS_FILE, EPOCHS_SCHEMA, METRIC_COLUMNS, TRIALS_FILE, TRIALS_SCHEMA, to_arrow, write_table

SPACE = {
    "models": ["convnext_small", "densenet121"],
    "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5, "log": False},
    "class_weight_power": {"low": 0.0, "high": 1.0, "log": False},
    "unfreeze_depth": {"convnext_small": {"low": 0, "high": 9}, "densenet121": {"low": 0, "high": 16}},
}


def confusion(diagonal: int = 4, off: int = 1) -> list[list[int]]:
    """7x7 matrix: `diagonal` right per class and `off` wrong ones predicted as the next class."""
    matrix = np.eye(len(CLASSES), dtype=int) * diagonal
    for i in range(len(CLASSES)):
        matrix[i, (i + 1) % len(CLASSES)] += off
    return matrix.tolist()


def trial_row(trial_id: str, model: str = "densenet121", score: float = 0.5, **values: Any) -> dict[str, Any]:
    """A finished trial whose every metric is derived from `score` (macro F1), overridable by name."""
    row: dict[str, Any] = {
        "trial_id": trial_id, "status": "TERMINATED", "model": model, "learning_rate": 1e-3, "dropout": 0.2,
        "unfreeze_depth": 1, "class_weight_power": 0.5, "epochs_completed": 2, "best_epoch": 2,
        **{column: score for column in METRIC_COLUMNS},
        "val_balanced_accuracy": score + 0.1, "val_mel_recall": score / 2, "val_loss": 2.0 - score,
        "confusion_matrix": confusion(), "train_seconds": 1800.0, "cpus": 2.0, "gpus": 0.0,
        "node": "n1", "checkpoint": None, "error": None,
    }
    row.update(values)
    return row


def epoch_rows(trial: dict[str, Any], scores: list[float]) -> list[dict[str, Any]]:
    """One row per epoch of `trial` with the given validation macro F1s (phase 2 from epoch 2)."""
    return [{
        "trial_id": trial["trial_id"], "model": trial["model"], "epoch": epoch, "phase": 1 if epoch == 1 else 2,
        "train_loss": 2.0 - 0.1 * epoch, "val_macro_f1": score, "train_seconds": 60.0 * epoch,
    } for epoch, score in enumerate(scores, start=1)]


def write_results(directory: Path, trials: list[dict[str, Any]], epochs: list[dict[str, Any]] | None = None,
                  name: str = "handmade", schema: pa.Schema = TRIALS_SCHEMA, **metadata: Any) -> Path:
    """Write trials (and epochs) tables into `directory` with sweep-like metadata; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"config": {"name": name, "space": SPACE}, "versions": {"hamtune": "test"},
            "dataset_fingerprint": "f" * 16, "split_seed": 0, **metadata}
    write_table(to_arrow(trials, schema), str(directory / TRIALS_FILE), meta)
    if epochs is not None:
        write_table(to_arrow(epochs, EPOCHS_SCHEMA), str(directory / EPOCHS_FILE), meta)
    return directory


def two_model_sweep(directory: Path, n: int = 12) -> Path:
    """`n` trials alternating ConvNeXt-Small and DenseNet121, macro F1 rising with the learning rate."""
    trials, epochs = [], []
    for i in range(n):
        model = ("convnext_small", "densenet121")[i % 2]
        trial = trial_row(f"trial{i:02d}", model, score=0.3 + 0.03 * i, learning_rate=10 ** (-5 + 3 * i / n),
                          dropout=0.04 * i, unfreeze_depth=i % 4, class_weight_power=(i % 3) / 2,
                          gpus=0.5, confusion_matrix=confusion(4 + i % 3))
        trials.append(trial)
        epochs += epoch_rows(trial, [trial["val_macro_f1"] - 0.05, trial["val_macro_f1"]])
    return write_results(directory, trials, epochs, name="two-models")
