"""One trial: training from scratch or two-phase transfer learning, with per-epoch validation
metrics and checkpoints.

`run_trial` is the single code path for a trial: Ray Tune calls it through
`hamtune.sweep.tune.tune_trial` (reporting with `ray.tune.report`), and `hamtune train` calls it
in-process with a console reporter. Its training half, `train_epochs`, is also what `hamtune refit`
runs on train+val for a fixed epoch count, so a refit trains exactly as the trial did. Keras, and
TensorFlow or JAX under it (`training.backend`), are imported inside the functions, after the
trial has chosen its backend and decided which devices and thread pools it may use.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hamtune.config import SCRATCH, TrainingConfig
from hamtune.data.prepared import PreparedData
from hamtune.training.device import configure, set_seed
from hamtune.errors import HamtuneError
from hamtune.faults import inject
from hamtune.keys import FINISHED_KEY, OBJECTIVE, SEARCH_METRIC
from hamtune.metrics import compute_metrics
from hamtune.training.checkpoint import TrialState, load_state, restore, save_checkpoint
from hamtune.training.phases import PHASE_FINE_TUNE, Schedule, phase_epochs, phase_of
from hamtune.training.warm import ModelKey, TrialModel, build, trial_model_for

logger = logging.getLogger(__name__)

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


def trial_seed(seed: int, params: dict[str, Any], training: TrainingConfig) -> int:
    """The seed a trial trains with, derived from the sweep's seed: its initial weights, the
    dropout and augmentation draws and the batch order all follow from it.

    By default it depends on the backbone only (common random numbers): every trial of a model
    starts from the same weights and sees the same batches, so two trials differ by their
    hyperparameters alone, and a warm worker keeps that one starting point. With
    `training.seed_per_trial` it also varies with the hyperparameters, as before 0.2.0. Either
    way it is stable across retries and re-runs, whatever trial id Ray gives a trial, and a
    refit trains with its trial's seed.
    """
    fields = [str(params["model"])]
    if training.seed_per_trial:
        fields += [float(params["learning_rate"]), float(params["dropout"]), int(params["unfreeze_depth"]),
                   float(params["class_weight_power"])]
    return seed + zlib.crc32(json.dumps(fields).encode()) % 10_000


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
) -> tuple[TrialModel, np.ndarray]:
    """Configure the backend and devices, seed, attach the image cache and get the model at its start.

    Shared by trials and refits, so a refit trains exactly the model a trial trained. The model
    is this process's warm one when `training.warm_trials` (see `hamtune.training.warm`).
    Returns it and the cached images (rows in `data.index.table` order).
    """
    configure(training.backend, cpus, use_gpu, training.mixed_precision, gpu_share)
    from hamtune.data.cache import open_cache

    cache = open_cache(data.index, data.image_size, data.cache_dir)
    key = ModelKey.of(params, training, data.image_size)
    model = trial_model_for(key, seed, float(params["dropout"]), warm=training.warm_trials)  # built after seeding
    # Seeded again after the model: a new model's build drew from the global generators and a
    # reused one's did not, so both trials go on from the same random state.
    set_seed(seed)
    return model, cache.images


def trial_model(params: dict[str, Any], training: TrainingConfig, image_size: int, seed: int) -> Any:
    """The network a trial with `params` trains (backbone, weights, dropout, augmentation), newly
    built: what `hamtune export` loads a checkpoint into."""
    return build(ModelKey.of(params, training, image_size), seed, float(params["dropout"]))


def phase_schedule(params: dict[str, Any], training: TrainingConfig, phase: int, train_images: int) -> Schedule:
    """The optimizer settings of a trial's `phase` on `train_images` images.

    The peak rate is the trial's learning rate (scaled by `training.fine_tune_lr_scale` when
    fine-tuning). With `training.lr_schedule: cosine` it warms up linearly over
    `training.lr_warmup_epochs` and decays to zero at the phase's last epoch of
    `training.epochs`, whether or not the trial gets there: a scheduler's stop, a refit's
    shorter run or a resume sees the same rate at the same step.
    """
    scale = training.fine_tune_lr_scale if phase == PHASE_FINE_TUNE else 1.0
    schedule = Schedule(float(params["learning_rate"]) * scale, weight_decay=training.weight_decay)
    if training.lr_schedule == "constant":
        return schedule
    steps = math.ceil(train_images / training.batch_size)
    epochs = phase_epochs(phase, training.epochs, training.warmup_epochs, int(params["unfreeze_depth"]))
    return replace(schedule, warmup_steps=min(training.lr_warmup_epochs, epochs) * steps, decay_steps=epochs * steps)


def train_epochs(
    model: TrialModel,
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
    optimizer at the scaled learning rate. `model` is at its starting point; each phase's
    compiled model comes from it (`TrialModel.phase`). `resume` = (checkpoint directory, phase it was
    written in) restores weights and, within the same phase, the optimizer. Raises
    TrialDiverged on a non-finite loss.
    """
    from hamtune.data.class_weights import class_weights, sample_weights
    from hamtune.data.pipeline import make_dataset

    model_name = params["model"]
    depth = int(params["unfreeze_depth"])
    from_scratch = training.mode_for(model_name) == SCRATCH
    weights = sample_weights(labels, class_weights(labels, float(params["class_weight_power"])))
    phase, compiled = None, None
    for epoch in range(start + 1, (training.epochs if stop is None else stop) + 1):
        if phase_of(epoch, training.warmup_epochs, depth, from_scratch) != phase:
            phase = phase_of(epoch, training.warmup_epochs, depth, from_scratch)
            compiled = model.phase(phase, depth, phase_schedule(params, training, phase, len(positions)))
            if resume is not None:
                restore(resume[0], compiled, optimizer=resume[1] == phase)
                resume = None
        inject("epoch", compiled, epoch=epoch, start=start, **params)
        train_ds = make_dataset(
            images, positions, labels, weights,
            batch_size=training.batch_size, shuffle=True, seed=seed + epoch,
        )
        tick = time.perf_counter()
        history = compiled.fit(train_ds, epochs=1, verbose=0, shuffle=False)
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
    predict = model.predictor
    logger.info("model %s and data attached in %.1fs", "reset" if model.warm else "built",
                time.perf_counter() - started)

    state, saved_phase = load_state(checkpoint_dir) if checkpoint_dir else (TrialState(), 0)
    resume = (checkpoint_dir, saved_phase) if checkpoint_dir else None
    mode = training.mode_for(params["model"])
    epochs = train_epochs(model, params, training, images, train_pos, y_train, seed, start=state.epoch, resume=resume)
    try:
        for result in epochs:
            state.train_seconds += result.seconds
            with model.evaluated(training.weight_averaging):
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
                    save_checkpoint(Path(tmp), model.compiled, state, result.phase)
                    reporter.report(row, Path(tmp))
            else:
                reporter.report(row, None)
            if patience_out:
                logger.info("early stop at epoch %d: no better %s for %d epochs",
                            result.epoch, OBJECTIVE.name, training.patience)
                break
    except TrialDiverged as error:
        raise TrialDiverged(str(error), state.best_score if state.best_epoch else None) from None
    return state
