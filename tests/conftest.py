"""Shared fixtures: where the real HAM10000 sample lives (used in place, never copied)."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HAMTUNE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Why a slow test is slow (pyproject.toml's markers); `-m ray` etc. runs the part a change touches.
SLOW_REASONS = ("ray", "backbone", "real_data", "jax")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tiers stay honest: every slow test names why, and a test with a reason is in the slow tier."""
    wrong = []
    for item in items:
        slow = item.get_closest_marker("slow") is not None
        reasons = [name for name in SLOW_REASONS if item.get_closest_marker(name) is not None]
        if slow != bool(reasons):
            wrong.append(f"{item.nodeid}: " + ("marked slow without a reason" if slow else
                                              f"marked {', '.join(reasons)} but not slow"))
    if wrong:
        raise pytest.UsageError("slow markers (see tests/README.md):\n" + "\n".join(wrong))


#: The time budgets of tests/README.md on a 2-core machine, in minutes: the inner loop and the whole suite.
BUDGET_MINUTES = {"not slow": 5, "": 30}
_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line comparing this run's time with its tier's budget, when the run is a whole tier."""
    tier = config.option.markexpr.strip()
    whole = config.args == list(config.getini("testpaths")) and not config.option.keyword
    if config.option.collectonly or tier not in BUDGET_MINUTES or not whole:
        return
    minutes, budget = (time.monotonic() - _STARTED) / 60, BUDGET_MINUTES[tier]
    verdict = "within" if minutes <= budget else "OVER"
    terminalreporter.write_line(f"suite time: {minutes:.1f} min for {'the inner loop' if tier else 'the whole suite'}, "
                                f"{verdict} its {budget}-minute budget on 2 cores (tests/README.md)")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real 124-image HAM10000 sample in the Kaggle layout."""
    path = SHARED_DATA / "ham10000-sample"
    if not path.is_dir():
        pytest.fail(f"real HAM10000 sample not found at {path} (set HAMTUNE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def full_metadata() -> Path:
    """The full original metadata CSV (10,015 rows; its images are not available)."""
    path = SHARED_DATA / "HAM10000_metadata_full.csv"
    if not path.is_file():
        pytest.fail(f"full HAM10000 metadata not found at {path} (set HAMTUNE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def hamtune_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image/synthetic-data cache for the whole session, so synthetic data is generated once."""
    return tmp_path_factory.mktemp("hamtune-cache")


@functools.cache
def backbone_weights_file(model: str) -> str:
    """A weights file of `model`'s backbone without its top, random init, made once per session.

    Plumbing tests (faults, resume, clusters, tables) run in transfer mode from it: the frozen
    backbone makes them fast and gives them both phases. They prove plumbing only; that models
    learn is tested on real data in tests/test_learning.py.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from hamtune.backbones import get_backbone

    path = Path(tempfile.mkdtemp(prefix="hamtune-test-weights-")) / f"{model}_notop.weights.h5"
    keras.utils.set_random_seed(0)
    net = getattr(keras.applications, get_backbone(model).application)(
        include_top=False, weights=None, input_shape=(32, 32, 3))
    net.save_weights(path)
    keras.backend.clear_session()
    return str(path)


def tiny_sweep_yaml(
    name: str, storage: Path, models: tuple[str, ...] = ("convnext_small", "densenet121"), trials: int = 2,
    epochs: int = 2, points: list[dict] | None = None, *, images: int = 200, depth: tuple[int, int] = (0, 1),
    max_concurrent: int = 2, cpus: float = 1, gpus: float = 0, retries: int = 1, scratch: bool = False,
) -> str:
    """A real but tiny sweep file: synthetic data, 32 px, no ASHA.

    Transfer mode from `backbone_weights_file` by default (warm-up epoch 1, then the top
    blocks); `scratch=True` trains from scratch (`weights: none`, no depth). By default the
    search starts with one trial per model (`points`; pass [] for none).
    """
    if points is None:
        points = [{"model": m, "learning_rate": 1.0e-3, "dropout": 0.2, "class_weight_power": 0.5,
                   **({} if scratch else {"unfreeze_depth": 1})} for m in models]
    space: dict[str, Any] = {"models": list(models)}
    if not scratch:
        space["unfreeze_depth"] = {m: {"low": depth[0], "high": depth[1]} for m in models}
    weights = "none" if scratch else {m: backbone_weights_file(m) for m in models}
    sweep = {
        "name": name,
        "data": {"dir": None, "image_size": 32, "synthetic": {"images": images, "seed": 0}},
        "space": space,
        "search": {"seed": 0, "trials": trials, "max_concurrent": max_concurrent, "points_to_evaluate": points},
        "scheduler": "none",
        "training": {"epochs": epochs, "warmup_epochs": 1, "batch_size": 32, "patience": epochs,
                     "weights": weights, "mixed_precision": False},
        "resources": {"cpus_per_trial": cpus, "gpus_per_trial": gpus},
        "storage": str(storage),
        "failures": {"max_retries": retries},
    }
    return yaml.safe_dump(sweep, sort_keys=False)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen,
               log: Path) -> Any:
    """Poll `condition` until it returns something truthy; fail with the log if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the sweep exited ({process.returncode}) before {what}:\n{log.read_text()[-5000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-5000:]}")


def alive_in_session(sid: int) -> list[int]:
    """Processes (not zombies) of session `sid`, from /proc: Ray's daemons keep the session of `ray start`,
    Chromium's helpers the session of Chromium."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def hamtune_env(cache: Path) -> dict[str, str]:
    """Environment for a `hamtune` subprocess: the session cache, quiet TensorFlow, no Ray usage stats."""
    env = dict(os.environ)
    env.update(HAMTUNE_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="3", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    return env


def study_of(experiment: Path) -> Any:
    """An experiment's persistent Optuna study, loaded the way `optuna.load_study` users do."""
    from hamtune.search.storage import JOURNAL_FILE, StudyLocation

    return StudyLocation(str(experiment / JOURNAL_FILE), experiment.name).load()


def assert_study_agrees_with_tables(experiment: Path) -> dict[str, Any]:
    """The sweep's Optuna study holds exactly the trials of its tables, each with the same parameters,
    its final state (ERROR: FAIL; otherwise COMPLETE, or PRUNED when the scheduler stopped it), the
    trial's score as its value (a PRUNED trial: as its last intermediate value) and one
    intermediate value per epoch, the best val macro F1 so far. Returns the Optuna trials by trial id.
    """
    import optuna
    import pandas as pd

    from hamtune.search.space import unfreeze_parameter
    from hamtune.keys import RAY_TRIAL_ATTR

    state = optuna.trial.TrialState
    study = study_of(experiment)
    by_id = {trial.user_attrs[RAY_TRIAL_ATTR]: trial for trial in study.trials}
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert sorted(by_id) == sorted(trials["trial_id"]) and len(study.trials) == len(trials)
    for row in trials.to_dict("records"):
        trial = by_id[row["trial_id"]]
        expected = {key: row[key] for key in ("model", "learning_rate", "dropout", "class_weight_power")}
        if row["mode"] == "transfer":
            expected[unfreeze_parameter(row["model"])] = row["unfreeze_depth"]
        assert trial.params == pytest.approx(expected), row["trial_id"]
        scores = epochs[epochs["trial_id"] == row["trial_id"]].sort_values("epoch")["val_macro_f1"]
        assert trial.intermediate_values == pytest.approx(dict(enumerate(scores.cummax(), start=1)))
        if row["status"] == "ERROR":
            assert trial.state == state.FAIL
        elif trial.state == state.PRUNED:
            assert trial.intermediate_values[max(trial.intermediate_values)] == pytest.approx(row["val_macro_f1"])
        else:
            assert trial.state == state.COMPLETE and trial.value == pytest.approx(row["val_macro_f1"])
    return by_id
