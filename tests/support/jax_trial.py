"""One real trial under Keras on JAX, in a process of its own, for tests/training/test_jax_backend.py.

Keras fixes its backend at its first import and the test process runs it on TensorFlow, so
this runs as `python -m tests.support.jax_trial DATA_DIR CACHE_DIR WEIGHTS OUT_DIR` with KERAS_BACKEND
unset: `run_trial` itself must choose JAX (`training.backend: jax`). It trains, checkpoints
every epoch, resumes from the first checkpoint, runs the trial again from its start on the now
warm model, restores the last checkpoint into a fresh model, saves that as `.keras` and loads it
back, and writes what it saw to OUT_DIR/result.json: the test asserts.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hamtune.config import parse_sweep
from hamtune.data.prepared import prepare_data
from hamtune.training.checkpoint import restore_weights
from hamtune.training.inference import make_predictor
from hamtune.training.trial import run_trial, trial_model

#: Larger than the split: one batch shape per phase, so XLA compiles each step once (minutes on 2 cores).
BATCH = 256
PARAMS = {"model": "densenet121", "learning_rate": 1e-3, "dropout": 0.2, "class_weight_power": 0.5}


class KeepingReporter:
    """Keeps every epoch's row and a copy of its checkpoint, as Ray Tune would."""

    wants_checkpoints = True

    def __init__(self, out: Path) -> None:
        self.out, self.rows = out, []

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.rows.append({key: metrics[key] for key in ("epoch", "phase", "train_loss", "val_macro_f1", "train_seconds")})
        shutil.copytree(checkpoint_dir, self.out / f"epoch_{metrics['epoch']}")


def main(data_dir: str, cache_dir: str, weights: str, out: str) -> None:
    out_dir = Path(out)
    sweep = parse_sweep({
        "name": "jax", "data": {"dir": data_dir, "image_size": 32, "cache_dir": cache_dir},
        "space": {"models": ["densenet121"]}, "scheduler": "none",
        "training": {"backend": "jax", "epochs": 2, "warmup_epochs": 1, "batch_size": BATCH, "patience": 2,
                     "weights": weights, "mixed_precision": False},
    })
    params = {**PARAMS, "unfreeze_depth": 0 if weights == "none" else 1}
    data = prepare_data(sweep.data)
    first = KeepingReporter(out_dir / "first")
    run_trial(params, sweep.training, data, first, cpus=1, use_gpu=False)
    resumed = KeepingReporter(out_dir / "resumed")
    run_trial(params, sweep.training, data, resumed, checkpoint_dir=out_dir / "first" / "epoch_1", cpus=1,
              use_gpu=False)
    again = KeepingReporter(out_dir / "again")
    run_trial(params, sweep.training, data, again, cpus=1, use_gpu=False)

    import keras

    from hamtune.data.cache import open_cache
    from hamtune.data.pipeline import make_dataset
    from hamtune.training.models import load_model

    model = trial_model(params, sweep.training, sweep.data.image_size, seed=0)
    restore_weights(out_dir / "resumed" / "epoch_2", model)
    model.save(out_dir / "model.keras")
    val = data.positions("val")
    images = open_cache(data.index, data.image_size, data.cache_dir).images  # built by the trial
    dataset = make_dataset(images, val, data.labels(val), batch_size=BATCH)
    restored = make_predictor(model)(dataset)
    loaded = make_predictor(load_model(out_dir / "model.keras"))(dataset)
    result = {
        "backend": keras.backend.backend(), "dataset": type(dataset).__name__,
        "first": first.rows, "resumed": resumed.rows, "again": again.rows,
        "loaded_matches_restored": bool(np.allclose(restored, loaded, atol=1e-5)),
        "imported": sorted(name for name in ("tensorflow", "ray", "optuna") if name in sys.modules),
    }
    (out_dir / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
