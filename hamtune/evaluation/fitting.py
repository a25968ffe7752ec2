"""Training runs outside a sweep: fit a configuration on some images, predict others.

Refits, cross-validation folds and the final ensemble all train with the trial's own code
(`hamtune.training.trial.train_epochs`), so what they measure is the model the sweep chose. A batch
of runs goes one after the other in this process, or, with a Ray address, as concurrent Ray
tasks with a trial's resources each (the files are still written here, by the driver).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from hamtune.evaluation.files import MODEL_FILE

if TYPE_CHECKING:
    from hamtune.config import SweepConfig
    from hamtune.data.prepared import PreparedData

logger = logging.getLogger(__name__)


def check_cpus(cpus: float | None) -> None:
    """`--cpus` of the commands that train here: absent (every core) or a positive number."""
    from hamtune.errors import ConfigError

    if cpus is not None and not cpus > 0:  # NaN included
        raise ConfigError(f"--cpus must be > 0, got {cpus}")


class FitJob(NamedTuple):
    """One training run: `params` trained on `fit` rows for `epochs`, then predicting `predict` rows."""

    name: str  # what the log calls it, e.g. "config 2, fold 3"
    params: dict[str, Any]
    epochs: int
    seed: int
    fit: np.ndarray  # positions in the image cache
    predict: np.ndarray
    views: str = "none"  # also predict averaged over these TTA views ("flips", "dihedral")
    keep_model: bool = False  # hand the trained model back as `.keras` bytes


class Fit(NamedTuple):
    proba: np.ndarray  # (len(predict), classes)
    tta_proba: np.ndarray | None
    model_file: bytes | None
    seconds: float  # training time


class RunStore(Protocol):
    """Where finished runs are kept so an interrupted batch does not train them again
    (`hamtune.evaluation.resume.FinishedRuns`)."""

    def get(self, job: FitJob) -> Fit | None: ...

    def put(self, job: FitJob, fit: Fit) -> None: ...


def run_fit(job: FitJob, sweep: SweepConfig, data: PreparedData, cpus: float, use_gpu: bool | None) -> Fit:
    """Train `job` in this process on its devices, with `cpus` threads."""
    from hamtune.data.pipeline import make_dataset
    from hamtune.evaluation.tta import with_tta
    from hamtune.training.inference import make_predictor
    from hamtune.training.trial import build_trial_model, train_epochs

    model, images = build_trial_model(job.params, sweep.training, data, cpus, use_gpu=use_gpu, seed=job.seed)
    logger.info("%s: training %s on %d images for %d epoch(s)", job.name, job.params["model"], len(job.fit),
                job.epochs)
    seconds = 0.0
    for result in train_epochs(model, job.params, sweep.training, images, job.fit, data.labels(job.fit),
                               job.seed, stop=job.epochs):
        seconds += result.seconds
        logger.info("%s: epoch %d (phase %d): train_loss %.4f", job.name, result.epoch, result.phase,
                    result.train_loss)
    dataset = make_dataset(images, job.predict, data.labels(job.predict), batch_size=sweep.training.batch_size)
    with model.evaluated(sweep.training.weight_averaging):  # what the trials scored
        proba = model.predictor(dataset)  # the trials' own evaluation path
        tta_proba = None if job.views == "none" else make_predictor(with_tta(model.model, job.views))(dataset)
        model_file = None
        if job.keep_model:
            with tempfile.TemporaryDirectory(prefix="hamtune-fit-") as tmp:
                model.model.save(Path(tmp) / MODEL_FILE)
                model_file = (Path(tmp) / MODEL_FILE).read_bytes()
    if not sweep.training.warm_trials:
        import keras

        keras.backend.clear_session()  # the next run in this process starts from a clean slate
    return Fit(proba, tta_proba, model_file, seconds)


def _ray_fit(job: FitJob, sweep: SweepConfig, data: PreparedData) -> Fit:
    """`run_fit` inside a Ray task, on the CPUs and GPUs Ray gave it (like a trial)."""
    import ray

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hamtune").setLevel(logging.INFO)  # each epoch's line reaches the driver's console
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return run_fit(job, sweep, data, cpus, bool(ray.get_gpu_ids()))


def run_fits(jobs: Sequence[FitJob], sweep: SweepConfig, data: PreparedData, cpus: float,
             address: str | None = None, runs: RunStore | None = None) -> list[Fit]:
    """Every job's `Fit`, in order: here one after another, or as Ray tasks when `address` is given.

    `address` is auto, host:port, or "local" for a private Ray instance on this machine; each
    task asks for the resources a trial of its model had, so Ray runs as many at once as fit.
    With `runs`, a job an earlier attempt finished is not trained again, and each new one is
    kept there as soon as it finishes.
    """
    fits: dict[int, Fit] = {}
    for i, job in enumerate(jobs):
        kept = runs.get(job) if runs else None
        if kept is not None:
            fits[i] = kept
            logger.info("%s: finished by an earlier attempt, reused", job.name)
    todo = [i for i in range(len(jobs)) if i not in fits]

    def finished(i: int, fit: Fit) -> None:
        fits[i] = fit
        if runs:
            runs.put(jobs[i], fit)
        logger.info("finished %s (%d of %d runs)", jobs[i].name, len(fits), len(jobs))

    if address is None:
        for i in todo:
            finished(i, run_fit(jobs[i], sweep, data, cpus, None))
        return [fits[i] for i in range(len(jobs))]
    import ray

    from hamtune.sweep.cluster import init_ray

    if not todo:
        return [fits[i] for i in range(len(jobs))]
    init_ray(None if address == "local" else address)
    try:
        pending = {}
        for i in todo:
            need = sweep.resources.for_model(jobs[i].params["model"])
            task = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=0)(_ray_fit)
            pending[task.remote(jobs[i], sweep, data)] = i
        logger.info("%d run(s) submitted as Ray tasks with a trial's resources each", len(todo))
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            finished(pending.pop(ready[0]), ray.get(ready[0]))
        return [fits[i] for i in range(len(jobs))]
    finally:
        ray.shutdown()
