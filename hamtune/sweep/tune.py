"""The Ray Tune adapter: a trial as Tune's function trainable, and the Tuner that runs them.

Ray Tune owns scheduling, retries, checkpoints and resume; this module only says what a trial
is to it (`tune_trial`, with its resources and directory name), how a trial reports
(`TuneReporter`), and how the Tuner is assembled from the search, the scheduler and hamtune's
callbacks. Orchestration around it (checks, data, the experiment directory) is `run`.
"""

from __future__ import annotations

import logging
import math
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hamtune.config import SweepConfig
from hamtune.data.prepared import PreparedData
from hamtune.keys import DIVERGED_KEY, OBJECTIVE, SEARCH_METRIC
from hamtune.store.experiment import ExperimentDir
from hamtune.training.trial import TrialDiverged, run_trial, trial_seed

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


class TuneReporter:
    """Reports one row per epoch to Ray Tune, with the checkpoint that lets the trial resume."""

    wants_checkpoints = True

    def __init__(self) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report({**metrics, "node_id": self.node_id}, checkpoint=checkpoint)


def tune_trial(config: dict[str, Any], data: PreparedData, training: Any, seed: int) -> None:
    """The Ray Tune function trainable: resume from Tune's checkpoint if any, then train."""
    import ray
    from ray import tune

    # Ray Train logs "Checkpoint successfully created" at every report: one console line per
    # trial-epoch that says nothing the recorder's progress lines do not.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    sys.unraisablehook = ignore_exit_at_teardown
    context = tune.get_context()
    resources = context.get_trial_resources().required_resources
    run = partial(
        run_trial, config, training, data.on_this_node(), TuneReporter(),
        cpus=resources.get("CPU", 1), use_gpu=bool(ray.get_gpu_ids()),
        seed=trial_seed(seed, config, training), gpu_share=resources.get("GPU", 0),
    )
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            run()
            return
        with checkpoint.as_directory() as directory:
            run(checkpoint_dir=Path(directory))
    except TrialDiverged as error:
        # Not a failure to retry (the retry would diverge again): one last report says why the
        # trial stopped, and it ends normally.
        tune.report(diverged_report(error))


def diverged_report(error: TrialDiverged) -> dict[str, Any]:
    """The last report of a diverged trial: its best score so far for the search, if it had one.

    The objective of this report is NaN (no epoch was scored), so it never becomes the trial's
    best epoch. A trial that diverged after scored epochs keeps its best one, for the tables
    and the search alike. One that diverged before any tells the search macro F1 0, the lowest:
    TPE then learns that this region of the space (typically too high a learning rate) is
    useless. A NaN would make Optuna fail the trial, and TPE ignores failed trials, so it would
    keep suggesting similar configurations.
    """
    best = 0.0 if error.best_score is None else error.best_score
    return {OBJECTIVE.name: math.nan, SEARCH_METRIC: best, DIVERGED_KEY: str(error)}


def ignore_exit_at_teardown(unraisable: Any) -> None:
    """Drop the SystemExit that Ray's SIGTERM handler raises when it lands inside a finalizer.

    When Tune tears a finished trial's worker down, the SIGTERM can arrive while the garbage
    collector runs a weakref callback; Python then prints "Exception ignored in ..." and a
    traceback for an exit that is exactly what was asked for, at the end of a successful sweep.
    Every other unraisable exception is reported as usual.
    """
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def trial_resources(config: dict[str, Any], sweep: SweepConfig) -> dict[str, float]:
    """Per-trial resources for the model a trial was given (per-model overrides apply)."""
    model = sweep.resources.for_model(config["model"])
    return {"cpu": model.cpus, "gpu": model.gpus}


def trial_dirname(trial: Any) -> str:
    """Short, stable trial directory names (Tune's default embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def make_trainable(sweep: SweepConfig, data: PreparedData) -> Any:
    from ray import tune

    trainable = tune.with_parameters(tune_trial, data=data, training=sweep.training, seed=sweep.search.seed)
    return tune.with_resources(trainable, partial(trial_resources, sweep=sweep))


def make_tuner(sweep: SweepConfig, data: PreparedData, experiment: ExperimentDir, metadata: dict[str, Any],
           storage: BaseStorage, verbose: bool, tracking: list[Any]) -> Any:
    from ray import tune

    from hamtune.sweep.progress import SweepProgress
    from hamtune.sweep.recorder import ResultRecorder
    from hamtune.search.scheduler import make_scheduler
    from hamtune.search.searcher import make_searcher

    searcher, scheduler = make_searcher(sweep, storage), make_scheduler(sweep.scheduler)
    resources = {
        name: (sweep.resources.for_model(name).cpus, sweep.resources.for_model(name).gpus)
        for name in sweep.space.models
    }
    modes = {name: sweep.training.mode_for(name) for name in sweep.space.models}
    recorder = ResultRecorder(experiment.uri, metadata, resources, modes)
    return tune.Tuner(
        make_trainable(sweep, data),
        tune_config=tune.TuneConfig(
            metric=SEARCH_METRIC, mode=OBJECTIVE.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=sweep.search.trials, max_concurrent_trials=sweep.search.max_concurrent,
            # Warm trials: a worker process serves trial after trial, keeping its compiled model.
            reuse_actors=sweep.training.warm_trials, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=experiment.storage,
            failure_config=tune.FailureConfig(max_failures=sweep.failures.max_retries),
            # The best epoch's checkpoint (what the tables name and `export` reads) and the latest
            # (what a retry or resume continues from: Ray always keeps it).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=OBJECTIVE.name, checkpoint_score_order=OBJECTIVE.mode),
            # Ray's periodic status tables only when asked for: hamtune shows its own progress.
            callbacks=[recorder, SweepProgress(sweep.search.trials), *tracking], verbose=1 if verbose else 0,
        ),
    )
