"""One trial: training from scratch or two-phase transfer learning, with per-epoch validation
metrics and checkpoints.

`run_trial` is the single code path for a trial: Ray Tune calls it through `tune_trainable`
(reporting with `ray.tune.report`), and `hamtune train` calls it in-process with a console
reporter. Its training half, `train_epochs`, is also what `hamtune refit` runs on train+val for a
fixed epoch count, so a refit trains exactly as the trial did. Keras, and TensorFlow or JAX
under it (`training.backend`), are imported inside the functions, after the trial has chosen its
backend and decided which devices and thread pools it may use.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hamtune.config import SCRATCH, TrainingConfig
from hamtune.data.prepared import PreparedData
from hamtune.device import configure, set_seed
from hamtune.errors import HamtuneError
from hamtune.faults import inject
from hamtune.metrics import compute_metrics

logger = logging.getLogger(__name__)

#: Hyperparameters a trial receives (the search space's keys).
PARAMS: tuple[str, ...] = ("model", "learning_rate", "dropout", "unfreeze_depth", "class_weight_power")
OBJECTIVE = "val_macro_f1"
#: What ASHA and Optuna compare: the best `OBJECTIVE` so far, a trial's result in the tables.
#: Ray's OptunaSearch tells Optuna the metric of a trial's last report, and the last epoch of a
#: trial stopped by ASHA or patience is often not its best.
SEARCH_METRIC = "best_val_macro_f1"
#: The result key under which a diverged trial reports why it stopped, with a NaN objective.
DIVERGED_KEY = "diverged"
#: Set on the report of a trial's last epoch when the trial itself ended (all epochs, or patience):
#: a trial whose last report lacks it was stopped by the scheduler (see `hamtune.searcher`).
FINISHED_KEY = "trial_finished"
#: Training phases, per epoch: from scratch the whole network trains from the first epoch; in
#: transfer mode the head trains alone first, then the top `unfreeze_depth` blocks join it.
PHASE_SCRATCH, PHASE_HEAD, PHASE_FINE_TUNE = 0, 1, 2
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.npz"
OPTIMIZER_FILE = "optimizer.npz"
#: The entry of a checkpoint file that lists the keys of all its model's (or optimizer's) variables.
ALL_KEYS = "__keys__"
#: Keras's names for the objects hamtune's models and optimizers create unnamed, numbered per process.
_AUTO_NAMED = re.compile(r"^(seed_generator|adam|loss_scale_optimizer)_\d+$")


class TrialDiverged(HamtuneError):
    """The training loss became NaN or infinite: the trial stops.

    `best_score` is the best validation score of the epochs scored before, if any: a late
    divergence keeps its best epoch (and that epoch's checkpoint), an early one has no score.
    """

    def __init__(self, message: str, best_score: float | None = None) -> None:
        super().__init__(message)
        self.best_score = best_score


class Reporter(Protocol):
    """Where a trial's per-epoch results go: Ray Tune, or the console for `hamtune train`."""

    wants_checkpoints: bool

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


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
        return float(self.best.get(OBJECTIVE, -math.inf))

    def record(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Count a finished epoch; a strictly better objective becomes the trial's result."""
        self.epoch = epoch
        if metrics[OBJECTIVE] > self.best_score:
            self.best, self.best_epoch, self.epochs_without_improvement = metrics, epoch, 0
        else:
            self.epochs_without_improvement += 1


def compile_model(model: Any, learning_rate: float) -> None:
    """Compile for one training phase: a fresh Adam at `learning_rate` and the weighted loss.

    Called at each phase boundary (Keras fixes the trainable set at compile time); shared with
    the tests and benchmarks so they train exactly what a trial trains.
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=[],
    )


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
    from hamtune.models import BACKBONE_LAYER

    frozen = set() if phase == PHASE_SCRATCH else {
        id(v) for v in model.get_layer(BACKBONE_LAYER).non_trainable_variables}
    return {key: v for key, v in zip(checkpoint_keys(model.variables), model.variables) if id(v) not in frozen}


def _save_checkpoint(directory: Path, model: Any, state: TrialState, phase: int) -> None:
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


def _load_state(directory: Path) -> tuple[TrialState, int]:
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


def _restore(directory: Path, model: Any, optimizer: bool) -> None:
    """Load model weights and, when the phase is unchanged, the optimizer's moments and step
    (and, under mixed precision, the loss scale and its step counter).

    At a phase boundary the uninterrupted run starts a fresh optimizer, so a resumed one does too.
    """
    import keras

    _assign(directory / WEIGHTS_FILE, model.variables, "model")
    if optimizer:
        # Built within its own name scope, as its first `apply` builds it in training: a
        # LossScaleOptimizer's inner Adam then has the paths it had when the checkpoint was written.
        with keras.name_scope(model.optimizer.name, caller=model.optimizer):
            model.optimizer.build(model.trainable_variables)
        _assign(directory / OPTIMIZER_FILE, model.optimizer.variables, "optimizer")


def restore_weights(directory: Path, model: Any) -> None:
    """Load a checkpoint's model variables into a model built like the trial's (for export)."""
    _restore(directory, model, optimizer=False)


def trial_seed(seed: int, params: dict[str, Any]) -> int:
    """The seed a trial trains with: the sweep's seed, varied by the trial's hyperparameters.

    Stable across retries (a retry rebuilds the frozen backbone from it, see `_trained_variables`)
    and across runs: the same configuration in a re-run of a sweep trains with the same seed,
    whatever random trial id Ray gives it, and so does its refit.
    """
    key = json.dumps([str(params["model"]), float(params["learning_rate"]), float(params["dropout"]),
                      int(params["unfreeze_depth"]), float(params["class_weight_power"])])
    return seed + zlib.crc32(key.encode()) % 10_000


def phase_of(epoch: int, warmup_epochs: int, unfreeze_depth: int, from_scratch: bool = False) -> int:
    """Phase of a 1-based epoch: 0 = from scratch (the whole network), 1 = head only (transfer
    warm-up), 2 = fine-tuning the top `unfreeze_depth` blocks."""
    if from_scratch:
        return PHASE_SCRATCH
    return PHASE_FINE_TUNE if unfreeze_depth > 0 and epoch > warmup_epochs else PHASE_HEAD


@dataclass(frozen=True)
class EpochResult:
    """One finished training epoch: its number (1-based), phase, mean training loss and fit time."""

    epoch: int
    phase: int
    train_loss: float
    seconds: float


def build_trial_model(
    params: dict[str, Any], training: TrainingConfig, data: PreparedData, cpus: float, use_gpu: bool | None,
    seed: int, gpu_share: float = 1.0,
) -> tuple[Any, np.ndarray]:
    """Configure the backend and devices, seed, attach the image cache and build the model in its mode.

    Shared by trials and refits, so a refit trains exactly the model a trial trained.
    Returns the model and the cached images (rows in `data.index.table` order).
    """
    configure(training.backend, cpus, use_gpu, training.mixed_precision, gpu_share)
    from hamtune.data.cache import open_cache

    set_seed(seed)
    cache = open_cache(data.index, data.image_size, data.cache_dir)
    return trial_model(params, training, data.image_size, seed), cache.images


def trial_model(params: dict[str, Any], training: TrainingConfig, image_size: int, seed: int) -> Any:
    """The network a trial with `params` trains (backbone, weights, dropout, augmentation): the one
    place that says so, for trials, refits and `hamtune export`, which loads a checkpoint into it."""
    from hamtune.models import build_model

    return build_model(
        params["model"], image_size, float(params["dropout"]),
        weights=training.weights_for(params["model"]), seed=seed,
        augmentation=training.augmentation_for(params["model"]),
    )


def make_predictor(model: Any) -> Callable[[Any], np.ndarray]:
    """Class probabilities of a dataset's images, from one inference function traced once.

    `model.predict` traces its function again after every `compile` (Keras resets it, and the
    trial recompiles at the phase boundary) and once more for the last, smaller batch; this
    function reads the variables as they are at each call, so one trace serves every epoch of
    both phases. Same computation as `predict` (`training=False`). Under TensorFlow it takes any
    batch size; under JAX, XLA compiles once per batch shape (the last, smaller batch once more).
    """
    import keras

    infer = _jax_inference(model) if keras.backend.backend() == "jax" else _tf_inference(model)

    def predict(dataset: Any) -> np.ndarray:
        return np.concatenate([np.asarray(infer(batch[0])) for batch in dataset])

    return predict


def _tf_inference(model: Any) -> Callable[[Any], Any]:
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.as_dtype(model.input.dtype))
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _jax_inference(model: Any) -> Callable[[Any], Any]:
    """`model(x, training=False)` as one jitted function of the variables' current values.

    The values are arguments, not constants baked in at trace time, and all of `model.variables`
    is passed whatever is trainable, so neither a training step nor the phase boundary's
    unfreezing retraces it.
    """
    import jax
    import keras

    @jax.jit
    def stateless(values: list[Any], x: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
            return model(x, training=False)

    return lambda x: stateless([variable.value for variable in model.variables], x)


def train_epochs(
    model: Any,
    params: dict[str, Any],
    training: TrainingConfig,
    images: np.ndarray,
    positions: np.ndarray,
    labels: np.ndarray,
    seed: int,
    start: int = 0,
    stop: int | None = None,
    resume: tuple[Path, int] | None = None,
) -> Iterator[EpochResult]:
    """Train epochs `start + 1` to `stop` (default `training.epochs`), yielding after each one.

    The training half of a trial, without validation: class-weighted batches reshuffled per
    epoch. From scratch the whole network trains at the learning rate from the first epoch; in
    transfer mode the head-only warm-up comes first, then the top blocks unfrozen with a fresh
    optimizer at the scaled learning rate. `resume` = (checkpoint directory, phase it was
    written in) restores weights and, within the same phase, the optimizer. Raises
    TrialDiverged on a non-finite loss.
    """
    from hamtune.data.pipeline import make_dataset
    from hamtune.data.weights import class_weights, sample_weights
    from hamtune.models import freeze_backbone, unfreeze

    model_name = params["model"]
    depth = int(params["unfreeze_depth"])
    from_scratch = training.mode_for(model_name) == SCRATCH
    weights = sample_weights(labels, class_weights(labels, float(params["class_weight_power"])))
    phase = None
    for epoch in range(start + 1, (training.epochs if stop is None else stop) + 1):
        if phase_of(epoch, training.warmup_epochs, depth, from_scratch) != phase:
            phase = phase_of(epoch, training.warmup_epochs, depth, from_scratch)
            if phase == PHASE_SCRATCH:
                compile_model(model, float(params["learning_rate"]))
            elif phase == PHASE_HEAD:
                freeze_backbone(model)
                compile_model(model, float(params["learning_rate"]))
            else:
                unfreeze(model, model_name, depth)
                compile_model(model, float(params["learning_rate"]) * training.fine_tune_lr_scale)
            if resume is not None:
                _restore(resume[0], model, optimizer=resume[1] == phase)
                resume = None
        inject("epoch", model, epoch=epoch, start=start, **params)
        train_ds = make_dataset(
            images, positions, labels, weights,
            batch_size=training.batch_size, shuffle=True, seed=seed + epoch,
        )
        tick = time.perf_counter()
        history = model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - tick
        train_loss = float(history.history["loss"][-1])
        if not math.isfinite(train_loss):
            raise TrialDiverged(
                f"training loss became {train_loss} at epoch {epoch} "
                f"({model_name}, learning_rate={params['learning_rate']:.3g}): trial stopped"
            )
        yield EpochResult(epoch, phase, train_loss, seconds)


def run_trial(
    params: dict[str, Any],
    training: TrainingConfig,
    data: PreparedData,
    reporter: Reporter,
    checkpoint_dir: Path | None = None,
    cpus: float = 1,
    use_gpu: bool | None = False,
    seed: int = 0,
    gpu_share: float = 1.0,
) -> TrialState:
    """Train one configuration, reporting validation metrics after every epoch.

    Resumes from `checkpoint_dir` when given: the epoch counter, best-so-far metrics, model
    weights and optimizer state continue, so a retried trial never repeats finished epochs.
    `gpu_share` is the share of a GPU the trial was given (it bounds a JAX trial's GPU memory).
    """
    from hamtune.data.pipeline import make_dataset

    started = time.perf_counter()
    model, images = build_trial_model(params, training, data, cpus, use_gpu, seed, gpu_share)
    train_pos, val_pos = data.positions("train"), data.positions("val")
    y_train, y_val = data.labels(train_pos), data.labels(val_pos)
    val_ds = make_dataset(images, val_pos, y_val, batch_size=training.batch_size)
    predict = make_predictor(model)
    logger.info("model built and data attached in %.1fs", time.perf_counter() - started)

    state, saved_phase = _load_state(checkpoint_dir) if checkpoint_dir else (TrialState(), 0)
    resume = (checkpoint_dir, saved_phase) if checkpoint_dir else None
    mode = training.mode_for(params["model"])
    epochs = train_epochs(model, params, training, images, train_pos, y_train, seed, start=state.epoch, resume=resume)
    try:
        for result in epochs:
            state.train_seconds += result.seconds
            proba = predict(val_ds)
            metrics = {f"val_{key}": value for key, value in compute_metrics(y_val, proba).items()}
            state.record(result.epoch, metrics)
            patience_out = state.epochs_without_improvement >= training.patience
            row = {
                **metrics, "epoch": result.epoch, "phase": result.phase, "mode": mode,
                "train_loss": result.train_loss, "best_epoch": state.best_epoch, SEARCH_METRIC: state.best_score,
                "train_seconds": state.train_seconds,
                FINISHED_KEY: patience_out or result.epoch == training.epochs,
            }
            if reporter.wants_checkpoints:
                with tempfile.TemporaryDirectory(prefix="hamtune-ckpt-") as tmp:
                    inject("checkpoint", epoch=result.epoch, **params)
                    _save_checkpoint(Path(tmp), model, state, result.phase)
                    reporter.report(row, Path(tmp))
            else:
                reporter.report(row, None)
            if patience_out:
                logger.info("early stop at epoch %d: no better val_macro_f1 for %d epochs",
                            result.epoch, training.patience)
                break
    except TrialDiverged as error:
        raise TrialDiverged(str(error), state.best_score if state.best_epoch else None) from None
    return state
