"""A trial's checkpoint: what it holds, written and read back so a retried trial continues exactly.

A checkpoint is three files: the trial's counters (`STATE_FILE`), the model variables training
can have changed (`WEIGHTS_FILE`) and the optimizer's (`OPTIMIZER_FILE`), each array keyed by the
variable's stable Keras path, so a mismatch is refused by name instead of loaded into the wrong
variable.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hamtune.errors import HamtuneError
from hamtune.keys import OBJECTIVE
from hamtune.training.phases import PHASE_SCRATCH

STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.npz"
OPTIMIZER_FILE = "optimizer.npz"
#: How the optimizer's moving average of a variable is named: the variable's path, then this.
AVERAGE_SUFFIX = "_average"
#: The entry of a checkpoint file that lists the keys of all its model's (or optimizer's) variables.
ALL_KEYS = "__keys__"
#: Keras's names for the objects hamtune's models and optimizers create unnamed, numbered per process.
_AUTO_NAMED = re.compile(r"^(seed_generator|trial_adam|loss_scale_optimizer)_\d+$")


@dataclass
class TrialState:
    """What a checkpoint must carry so a retried or resumed trial continues where it stopped."""

    epoch: int = 0
    best_epoch: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0

    @property
    def best_score(self) -> float:
        return float(self.best.get(OBJECTIVE.name, -math.inf))

    def record(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Count a finished epoch; a strictly better objective becomes the trial's result."""
        self.epoch = epoch
        if metrics[OBJECTIVE.name] > self.best_score:
            self.best, self.best_epoch, self.epochs_without_improvement = metrics, epoch, 0
        else:
            self.epochs_without_improvement += 1


def checkpoint_keys(variables: Sequence[Any]) -> list[str]:
    """The keys variables are saved under: each one's Keras path, made stable across processes.

    Keying by path rather than by position means a Keras upgrade that reorders or renames
    variables fails loudly at restore instead of loading weights into the wrong variable. Keras
    numbers the names of objects created without one per process (`seed_generator_6`, `adam_1`
    after a recompile); those components lose their number, and the keys that then coincide
    (one per seed generator) are told apart by their order: `seed_generator/seed_generator_state#2`.
    """
    seen: Counter[str] = Counter()
    keys = []
    for variable in variables:
        key = "/".join(_AUTO_NAMED.sub(r"\1", part) for part in variable.path.split("/"))
        keys.append(f"{key}#{seen[key]}" if seen[key] else key)
        seen[key] += 1
    return keys


def _trained_variables(model: Any, phase: int) -> dict[str, Any]:
    """The model's variables that training can have changed, by `checkpoint_keys`.

    From scratch that is every variable: BatchNorm's moving mean and variance are non-trainable
    but move with every training batch. In transfer mode the frozen backbone variables (BatchNorm
    statistics included: that backbone always runs in inference mode) keep the values
    `build_model` gave them, and a retried trial rebuilds them exactly (same seed, same weights
    file). Leaving them out cuts a ConvNeXt-Small checkpoint from ~275 MB to the head, the
    unfrozen blocks and the optimizer state.
    """
    from hamtune.training.models import BACKBONE_LAYER

    frozen = set() if phase == PHASE_SCRATCH else {
        id(v) for v in model.get_layer(BACKBONE_LAYER).non_trainable_variables}
    return {key: v for key, v in zip(checkpoint_keys(model.variables), model.variables) if id(v) not in frozen}


def save_checkpoint(directory: Path, model: Any, state: TrialState, phase: int) -> None:
    np.savez(directory / WEIGHTS_FILE, **{ALL_KEYS: np.array(checkpoint_keys(model.variables))},
             **{key: v.numpy() for key, v in _trained_variables(model, phase).items()})
    optimizer = model.optimizer.variables
    np.savez(directory / OPTIMIZER_FILE, **{ALL_KEYS: np.array(checkpoint_keys(optimizer))},
             **{key: v.numpy() for key, v in zip(checkpoint_keys(optimizer), optimizer)})
    payload = {
        "epoch": state.epoch, "phase": phase, "best_epoch": state.best_epoch, "best": state.best,
        "epochs_without_improvement": state.epochs_without_improvement,
        "train_seconds": state.train_seconds,
    }
    (directory / STATE_FILE).write_text(json.dumps(payload))


def load_state(directory: Path) -> tuple[TrialState, int]:
    """The trial state stored in a checkpoint and the phase it was written in."""
    payload = json.loads((directory / STATE_FILE).read_text())
    phase = payload.pop("phase")
    return TrialState(**payload), phase


def _assign(path: Path, variables: Sequence[Any], what: str) -> None:
    """Assign a saved file's arrays to `variables` by key, refusing any mismatch with the keys named.

    The file lists the keys of every variable its model had, saved or not: a model whose
    variables differ (another configuration, another Keras) is refused before anything is
    assigned; the order may differ. A phase-2 resume from a phase-1 checkpoint finds its newly unfrozen blocks listed
    but not saved, and leaves them at their built values.
    """
    keys = checkpoint_keys(variables)
    with np.load(path) as saved:
        listed = [str(key) for key in saved[ALL_KEYS]]
        if set(listed) != set(keys):
            raise HamtuneError(
                f"checkpoint {path} does not fit this {what}: it has {len(listed)} variables, this one "
                f"{len(keys)}; only in the checkpoint: {_some([k for k in listed if k not in set(keys)])}; "
                f"only here: {_some([k for k in keys if k not in set(listed)])}. It was written by "
                "another configuration or Keras version; start the trial afresh"
            )
        by_key = dict(zip(keys, variables))
        for key in saved.files:
            if key == ALL_KEYS:
                continue
            variable, value = by_key[key], saved[key]
            if tuple(variable.shape) != value.shape:
                raise HamtuneError(
                    f"checkpoint {path}: {key} has shape {value.shape}, this {what} needs "
                    f"{tuple(variable.shape)}: it was written by another configuration"
                )
            variable.assign(value)


def _some(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "") or "none"


def restore(directory: Path, model: Any, optimizer: bool) -> None:
    """Load model weights and, when the phase is unchanged, the optimizer's moments and step
    (and, under mixed precision, the loss scale and its step counter).

    At a phase boundary the uninterrupted run starts a fresh optimizer, so a resumed one does too.
    """
    import keras

    _assign(directory / WEIGHTS_FILE, model.variables, "model")
    if optimizer:
        # Built within its own name scope, as its first `apply` builds it in training: a
        # LossScaleOptimizer's inner Adam then has the paths it had when the checkpoint was written.
        if not model.optimizer.built:
            with keras.name_scope(model.optimizer.name, caller=model.optimizer):
                model.optimizer.build(model.trainable_variables)
        _assign(directory / OPTIMIZER_FILE, model.optimizer.variables, "optimizer")


def restore_weights(directory: Path, model: Any, averaged: bool = False) -> None:
    """Load a checkpoint's model variables into a model built like the trial's (for export).

    With `averaged` (`training.weight_averaging`), each variable the optimizer averaged takes
    its moving average instead: the weights the trial's scores came from.
    """
    restore(directory, model, optimizer=False)
    if not averaged:
        return
    with np.load(directory / OPTIMIZER_FILE) as saved:
        # Keras names an average after its variable's path (`add_variable_from_reference`).
        averages = {key.rsplit("/", 1)[-1]: key for key in saved.files if key.endswith(AVERAGE_SUFFIX)}
        for variable in model.variables:
            key = averages.get(variable.path.replace("/", "_") + AVERAGE_SUFFIX)
            if key is not None:
                variable.assign(saved[key])
