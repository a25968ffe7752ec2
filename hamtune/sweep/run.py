"""Running a sweep: checks, data, the experiment directory, then the Tuner to the end.

The driver validates the data and computes the split once, records them in the experiment
directory, and hands every trial the same `PreparedData` through Ray's object store. The Tuner
itself is assembled in `hamtune.sweep.tune`; the cluster and its checks are `hamtune.sweep.cluster`;
the trial is `hamtune.training.trial.run_trial`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hamtune.sweep.cluster import Capacity, capacity, check_cluster_paths, check_fits, cluster_hosts, init_ray
from hamtune.config import SCRATCH, SweepConfig, to_dict
from hamtune.data.cache import open_cache
from hamtune.data.prepared import PreparedData, prepare_data, prepare_saved
from hamtune.training.device import BACKEND_ENV
from hamtune.errors import ConfigError, ExperimentError, ModelError, SweepInterrupted
from hamtune.store.experiment import ExperimentDir, experiment_for
from hamtune.training.models import check_weights_file
from hamtune.sweep.resume import check_resumable
from hamtune.search.space import describe_space
from hamtune.search.storage import open_storage, study_location
from hamtune.sweep.tracking import tracking_callbacks
from hamtune.search.warmstart import seed_study, warm_start
from hamtune.version import __version__
from hamtune.sweep.tune import make_trainable, make_tuner

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Versions of the packages that decide a sweep's numbers, for the tables' metadata."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"hamtune": __version__}  # the source's own, also in an editable install not reinstalled
    for package in ("tensorflow", "keras", "ray", "optuna", "scikit-learn", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def dry_run_report(sweep: SweepConfig, data: PreparedData, experiment: ExperimentDir, cap: Capacity) -> str:
    """What `--dry-run` prints: resolved config, search space, resources, capacity, split."""
    import yaml

    from hamtune.data.split import split_summary

    study = study_location(sweep, experiment)
    lines = [f"experiment: {experiment.uri}", f"Optuna study: {study.name!r} in {study.storage}", "", "resolved config:",
             yaml.safe_dump(to_dict(sweep), sort_keys=False).rstrip(), "", "search space:"]
    lines += [f"  {line}" for line in describe_space(sweep.space)]
    lines += ["", "training mode per model:"]
    lines += [f"  {name}: {describe_mode(sweep, name)}" for name in sweep.space.models]
    lines += ["", f"warm trials: {describe_warm(sweep)}"]
    lines += ["", "per-trial resources and trials that fit at once on this cluster:"]
    for name in sweep.space.models:
        need = sweep.resources.for_model(name)
        lines.append(f"  {name}: {need.cpus:g} CPU, {need.gpus:g} GPU -> {cap.per_model[name]} at once")
    sizes = ", ".join(f"{node['CPU']:g} CPU/{node['GPU']:g} GPU" for node in cap.nodes)
    lines.append(f"  nodes: {len(cap.nodes)} ({sizes})")
    lines += ["", f"dataset: {data.index.root} ({data.index.format}, {len(data.index)} images, "
              f"fingerprint {data.index.fingerprint}), split seed {data.split_seed}",
              split_summary(data.split).to_string()]
    return "\n".join(lines)


def describe_mode(sweep: SweepConfig, model: str) -> str:
    """One line saying how a model trains: from scratch or by transfer, and with what augmentation."""
    training = sweep.training
    augmentation = f"augmentation {training.augmentation_for(model)}"
    if training.mode_for(model) == SCRATCH:
        return f"from scratch (weights none): the whole network trains from epoch 1, BatchNorm in training mode; {augmentation}"
    return (f"transfer from {training.weights_for(model)}: {training.warmup_epochs} head-only epoch(s), then the top "
            f"unfreeze_depth blocks at learning_rate x {training.fine_tune_lr_scale:g}; {augmentation}")


def describe_warm(sweep: SweepConfig) -> str:
    """What a worker reuses from one trial to the next (`training.warm_trials`), for the dry run.

    Ray Tune hands a finished trial's worker only to a trial with the same resources, so models
    with different per-model `resources` never share a worker.
    """
    if not sweep.training.warm_trials:
        return "off: every trial starts a new worker, builds its model and traces its training step"
    text = ("on: a worker keeps its built, compiled model for its next trial of the same backbone "
            "(reset to the trial's starting weights, with a fresh optimizer); ")
    groups: dict[tuple[float, float], list[str]] = {}
    for name in sweep.space.models:
        need = sweep.resources.for_model(name)
        groups.setdefault((need.cpus, need.gpus), []).append(name)
    if len(groups) == 1 and len(sweep.space.models) > 1:
        return text + f"{' and '.join(sweep.space.models)} trials share workers (same resources), each keeping one model per backbone"
    if len(groups) == 1:
        return text + "the first trial on each worker builds and traces"
    return text + ("trials of models with different resources never share a worker: "
                   + "; ".join(f"{', '.join(names)} ({cpus:g} CPU, {gpus:g} GPU)" for (cpus, gpus), names in groups.items()))


def run_sweep(sweep: SweepConfig, address: str | None = None, resume: bool = False,
              dry_run: bool = False, verbose: bool = False, echo: Any = print) -> Any:
    """Run (or resume, or only describe) a sweep; returns Ray's ResultGrid, or None for a dry run."""
    experiment = experiment_for(sweep.storage, sweep.name)
    if resume:
        check_resumable(sweep, experiment)
        data = prepare_saved(sweep.data, experiment, needs="resume needs the same data")
    else:
        if experiment.exists() and not dry_run:
            raise ExperimentError(
                f"experiment {experiment.uri} already exists: pass --resume to continue it, "
                "or choose another --name"
            )
        data = prepare_data(sweep.data)
    # Every trial's process starts with Keras's backend chosen (the driver never imports it).
    init_ray(address, {BACKEND_ENV: sweep.training.backend})
    check_cluster_paths(sweep, experiment, *cluster_hosts(address))
    cap = capacity(sweep)
    check_fits(sweep, cap, autoscaling=address is not None)
    check_weights(sweep)
    tracking = tracking_callbacks(sweep)
    if dry_run:
        echo(dry_run_report(sweep, data, experiment, cap))
        return None
    # Every image is decoded here, once, after the cheap checks and before any trial: a corrupt
    # image is a DataError naming the file now rather than failed trials later, and trials on
    # this machine find the cache built.
    open_cache(data.index, data.image_size, data.cache_dir)

    study = study_location(sweep, experiment)
    metadata = {
        "sweep_file": sweep.text, "config": to_dict(sweep), "versions": versions(),
        "dataset_fingerprint": data.index.fingerprint, "split_seed": data.split_seed,
    }
    from ray import tune

    if resume:
        path = experiment.uri
        if not tune.Tuner.can_restore(path):
            raise ExperimentError(f"--resume: {path} holds no Ray Tune state to resume from")
        echo(f"resuming {path}")
        tuner = tune.Tuner.restore(path, trainable=make_trainable(sweep, data), resume_errored=True)
    else:
        # Earlier sweeps are read and a database is opened before anything is written (a refused
        # warm start or a bad URL stops here); a journal file goes into the experiment directory.
        warm = warm_start(sweep, data.index.fingerprint) if sweep.search.warm_start else None
        storage = None if study.is_journal else open_storage(study, sweep.source)
        experiment.create(
            sweep.text, to_dict(sweep), data.split,
            {"fingerprint": data.index.fingerprint, "split_seed": data.split_seed, **versions()},
        )
        storage = storage or open_storage(study, sweep.source)
        if warm is not None:
            seed_study(storage, sweep, warm)
        tuner = make_tuner(sweep, data, experiment, metadata, storage, verbose, tracking)
    echo(f"sweep {sweep.name}: {sweep.search.trials} trials of {', '.join(sweep.space.models)} -> {experiment.uri}")
    echo(f"Optuna study {study.name!r} in {study.storage}; watch it live with `{study.dashboard_command()}` "
         "(pip install 'hamtune[dashboard]')")
    # Ray Tune answers a first Ctrl-C by saving the experiment, ending `fit` normally and telling
    # the user to call `Tuner.restore(...)`; hamtune prints its own command instead.
    logging.getLogger("ray.tune.tune").addFilter(_without_ray_restore_hint)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            results = tuner.fit()
    except OSError as error:  # Ray's own experiment-state or checkpoint writes (disk full, permissions)
        raise ExperimentError(
            f"Ray Tune could not write the state of {experiment.uri}: {error}; once the storage is "
            "writable again, continue with `hamtune sweep --resume`"
        ) from error
    if results.num_terminated + results.num_errors < sweep.search.trials:
        raise SweepInterrupted(
            f"sweep interrupted: {results.num_terminated + results.num_errors} of {sweep.search.trials} trials "
            f"ended; {experiment.uri} holds the state of the others and the tables so far"
        )
    check_outcome(experiment)
    return results


def _without_ray_restore_hint(record: logging.LogRecord) -> bool:
    return "Tuner.restore(" not in record.getMessage()


def check_weights(sweep: SweepConfig) -> None:
    """Each local weights file loads into its model's backbone (a ConfigError naming the key if not)."""
    for model in sweep.space.models:
        try:
            check_weights_file(model, sweep.training.weights_for(model))
        except ModelError as error:
            shared = isinstance(sweep.training.weights, str)
            key = "training.weights" + ("" if shared else f".{model}")
            hint = ""
            if shared and len(sweep.space.models) > 1:
                per_model = ", ".join(f"{name}: FILE" for name in sweep.space.models)
                hint = f"; a file holds one backbone's weights: give each model its own, {key}: {{{per_model}}}"
            raise ConfigError(f"{sweep.source}: {key}: {error}{hint}") from error


def check_outcome(experiment: ExperimentDir) -> None:
    """Raise when no trial produced a score (each errored after its retries, or diverged unscored).

    A sweep that ran but learned nothing must not exit as a success; one failed trial among
    others is normal and recorded in the tables, which decide what counts as ranked.
    """
    from hamtune.store.tables import TRIALS_FILE, is_ranked, read_table

    trials, _ = read_table(f"{experiment.uri}/{TRIALS_FILE}")
    rows = trials.to_dict("records")
    if rows and not any(is_ranked(row) for row in rows):
        first = rows[0]["error"] or f"status {rows[0]['status']}"
        raise ExperimentError(
            f"all {len(rows)} trials failed, so the sweep has no result; the first: {first} "
            f"(every trial's error is in {experiment.uri}/trials.parquet)"
        )

