"""One configuration trained in this process, without Ray: what `hamtune train` runs.

The settings become a one-model sweep config and the hyperparameters a `TrialPoint`, both
validated by `hamtune.config` with the rules of a sweep file, so `train` accepts exactly what a
sweep could try; the trial then runs through the same `run_trial` as a sweep's trials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hamtune.config import SCRATCH, TRANSFER, parse_point, parse_sweep
from hamtune.errors import ConfigError

if TYPE_CHECKING:
    from hamtune.training.checkpoint import TrialState

_MODE_TEXT = {SCRATCH: "from scratch", TRANSFER: "by transfer learning"}


def _echo(line: str) -> None:
    print(line, flush=True)  # an epoch's line shows when it ends, also through a pipe


def train(model: str = "densenet121", *, learning_rate: float = 1e-3, dropout: float = 0.3,
          unfreeze_depth: int | None = None, class_weight_power: float = 0.5,
          data: str | os.PathLike[str] | None = None, format: str = "auto", image_size: int = 224, val: float = 0.15,
          test: float = 0.15, split_seed: int = 0,
          cache_dir: str | os.PathLike[str] | None = None,
          epochs: int = 5, warmup_epochs: int | None = None, batch_size: int = 32, patience: int = 5,
          fine_tune_lr_scale: float = 0.1, weights: str = "imagenet", augmentation: str = "auto",
          backend: str = "tensorflow", mixed_precision: str | bool = "float16", lr_schedule: str | None = None,
          weight_decay: float | None = None, weight_averaging: bool | None = None, cpus: float = 2, seed: int = 0,
          echo: Callable[[str], None] = _echo, source: str = "hamtune.train",
          names: Mapping[str, str] | None = None) -> TrialState:
    """Train one configuration here, one line per epoch through `echo`; returns the trial's state
    (`best_epoch`, `best`: the validation metrics of its best epoch).

    `data` is a dataset directory (default: synthetic images); `weights` is imagenet, a local
    weights file (transfer learning: `warmup_epochs` head-only epochs, default 2, then the top
    `unfreeze_depth` blocks, default 0) or none (from scratch: every block, so neither applies).
    `mixed_precision` is float16, bfloat16 or False (float32 on GPUs too; CPUs always train in
    float32). `lr_schedule`, `weight_decay` and `weight_averaging` left None take a sweep file's
    defaults. A bad setting is a `ConfigError` naming it; `source` and `names` say where the
    settings came from and how that place spells each (the CLI: "command line" and its flags).
    """
    from hamtune.backbones import max_unfreeze_depth
    from hamtune.data.prepared import prepare_data
    from hamtune.training.trial import run_trial

    def spelled(key: str) -> str:
        return (names or {}).get(key, key)

    sweep = parse_sweep({
        "name": "train",
        "data": {"dir": data, "format": format, "image_size": image_size, "val_fraction": val,
                 "test_fraction": test, "split_seed": split_seed, "cache_dir": cache_dir},
        "space": {"models": [model]},
        "search": {"seed": seed},
        "scheduler": "none",  # one trial: nothing to compare it with
        "training": {"epochs": epochs, "warmup_epochs": 2 if warmup_epochs is None else warmup_epochs,
                     "batch_size": batch_size, "patience": patience, "fine_tune_lr_scale": fine_tune_lr_scale,
                     "weights": weights, "augmentation": augmentation, "backend": backend,
                     "mixed_precision": mixed_precision,
                     **{key: value for key, value in (("lr_schedule", lr_schedule), ("weight_decay", weight_decay),
                                                      ("weight_averaging", weight_averaging)) if value is not None}},
        "resources": {"cpus_per_trial": cpus},
    }, source=source)
    mode = sweep.training.mode_for(model)
    if mode == SCRATCH and (unfreeze_depth is not None or warmup_epochs is not None):
        given = spelled("unfreeze_depth" if unfreeze_depth is not None else "warmup_epochs")
        raise ConfigError(f"{given} does not apply with {spelled('weights')} none: training from scratch trains "
                          f"every block from the first epoch; drop it, or give {spelled('weights')} to fine-tune")
    point = parse_point(sweep, {
        "model": model, "learning_rate": learning_rate, "dropout": dropout, "class_weight_power": class_weight_power,
        "unfreeze_depth": None if mode == SCRATCH else 0 if unfreeze_depth is None else unfreeze_depth,
    }, names)
    params: dict[str, Any] = {
        "model": point.model, "learning_rate": point.learning_rate, "dropout": point.dropout,
        "unfreeze_depth": max_unfreeze_depth(model) if mode == SCRATCH else point.unfreeze_depth,
        "class_weight_power": point.class_weight_power,
    }
    prepared = prepare_data(sweep.data)
    echo(f"training {model} {_MODE_TEXT[mode]} on {prepared.index.root} ({len(prepared.index)} images) at "
         f"{image_size}px, augmentation {sweep.training.augmentation_for(model)}")
    return run_trial(params, sweep.training, prepared, _EpochLines(echo), cpus=sweep.resources.cpus_per_trial,
                     use_gpu=None, seed=sweep.search.seed)


class _EpochLines:
    """A trial reporter that writes one line of metrics per epoch and keeps no checkpoints."""

    wants_checkpoints = False

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.echo(
            f"epoch {metrics['epoch']:>3} (phase {metrics['phase']})  train_loss {metrics['train_loss']:.4f}  "
            f"val_loss {metrics['val_loss']:.4f}  val_macro_f1 {metrics['val_macro_f1']:.4f}  "
            f"val_balanced_accuracy {metrics['val_balanced_accuracy']:.4f}  "
            f"val_mel_recall {metrics['val_mel_recall']:.4f}  ({metrics['train_seconds']:.1f}s training)"
        )
