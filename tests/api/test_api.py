"""The Python API on hand-built experiments: tables, ranking, study, and bad input as one-line errors."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import hamtune
from hamtune import ConfigError, Experiment, ExperimentError, load_sweep, open_experiment, run_sweep, train
from hamtune.results.analysis import analyze
from hamtune.search.storage import JOURNAL_FILE, StudyLocation
from hamtune.store.experiment import CONFIG_FILE, MARKER
from tests.support.real_sweep import readme_example, run_tiny_sweep
from tests.support.handmade import epoch_rows, trial_row, write_results
from tests.support.shared import REPO


TRIALS = [
    trial_row("d1", "densenet121", 0.60),
    trial_row("c1", "convnext_small", 0.70),
    trial_row("e1", "densenet121", math.nan, status="ERROR", error="TrialDiverged: loss became nan"),
    trial_row("d2", "densenet121", 0.40),
]


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    """A hamtune experiment holding hand-built tables (a sweep writes the marker and config first)."""
    directory = tmp_path / "alpha"
    write_results(directory, TRIALS, [row for t in TRIALS for row in epoch_rows(t, [0.3, 0.5])], name="alpha")
    (directory / MARKER).write_text(json.dumps({"name": "alpha"}))
    (directory / CONFIG_FILE).write_text(json.dumps({"name": "alpha", "search": {"storage": None}}))
    return directory


def test_the_package_exports_the_api_without_importing_tensorflow_keras_or_ray() -> None:
    assert {"Experiment", "load_sweep", "open_experiment", "run_sweep", "train"} <= set(hamtune.__all__)
    probe = ("import sys, hamtune; "
             "print(sorted(m for m in ('tensorflow', 'keras', 'ray', 'optuna') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_experiment_reads_its_tables(experiment_dir: Path) -> None:
    experiment = open_experiment(experiment_dir)
    assert isinstance(experiment, Experiment) and experiment.name == "alpha"
    assert experiment.uri == str(experiment_dir) and repr(experiment) == f"Experiment({str(experiment_dir)!r})"
    assert sorted(experiment.trials["trial_id"]) == ["c1", "d1", "d2", "e1"]
    assert len(experiment.epochs) == 2 * len(TRIALS)


def test_best_ranks_as_analyze_does_and_leaves_failed_trials_out(experiment_dir: Path) -> None:
    best = open_experiment(str(experiment_dir)).best(3)
    assert best["trial_id"].tolist() == ["c1", "d1", "d2"]
    assert best["rank"].tolist() == [1, 2, 3]
    assert best["trial_id"].tolist() == analyze([str(experiment_dir)]).leaderboard["trial_id"].head(3).tolist()
    assert open_experiment(experiment_dir).best()["trial_id"].tolist() == ["c1"]
    assert len(open_experiment(experiment_dir).best(10)) == 3  # e1 failed: never among the best


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_best_refuses_a_k_that_is_no_count(experiment_dir: Path, k: object) -> None:
    with pytest.raises(ConfigError, match=r"^best\(k\): k must be an integer >= 1"):
        open_experiment(experiment_dir).best(k)  # type: ignore[arg-type]


def test_the_study_is_the_one_the_sweep_kept(experiment_dir: Path) -> None:
    experiment = open_experiment(experiment_dir)
    with pytest.raises(ExperimentError, match="kept no Optuna study"):
        experiment.study
    storage = StudyLocation(str(experiment_dir / JOURNAL_FILE), "alpha")
    import optuna

    optuna.create_study(study_name="alpha", storage=storage.open()).add_trial(
        optuna.trial.create_trial(params={"dropout": 0.2}, distributions={
            "dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}, value=0.6))
    study = experiment.study
    assert study.study_name == "alpha" and study.best_value == 0.6


def test_analyze_is_what_the_command_computes(experiment_dir: Path) -> None:
    analysis = open_experiment(experiment_dir).analyze(top=2)
    assert analysis.leaderboard["trial_id"].tolist() == ["c1", "d1"]


@pytest.mark.parametrize("path", ["does-not-exist", "plain-dir"])
def test_a_path_that_is_no_experiment_is_one_line_naming_it(tmp_path: Path, path: str) -> None:
    (tmp_path / "plain-dir").mkdir()
    with pytest.raises(ExperimentError) as error:
        open_experiment(tmp_path / path)
    assert str(tmp_path / path) in str(error.value) and "\n" not in str(error.value)


def test_an_experiment_without_tables_yet_says_so(experiment_dir: Path) -> None:
    (experiment_dir / "trials.parquet").unlink()
    with pytest.raises(ExperimentError, match="trials.parquet: no such result table"):
        open_experiment(experiment_dir).trials


def test_load_sweep_takes_the_commands_overrides(tmp_path: Path) -> None:
    sweep = load_sweep(REPO / "sweeps" / "smoke.yaml", name="mine", trials=2, storage=tmp_path, data_dir=str(tmp_path))
    assert (sweep.name, sweep.search.trials, sweep.storage, sweep.data.dir) == ("mine", 2, str(tmp_path), str(tmp_path))
    with pytest.raises(ConfigError, match="unknown override 'epochs'"):
        load_sweep(REPO / "sweeps" / "smoke.yaml", epochs=1)
    with pytest.raises(ConfigError, match="search.trials"):
        load_sweep(REPO / "sweeps" / "smoke.yaml", trials=0)


def test_run_sweep_refuses_a_bad_address_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="--address must be auto, local or HOST:PORT"):
        run_sweep(REPO / "sweeps" / "no-such.yaml", address="nowhere")
    with pytest.raises(ConfigError, match="no-such.yaml: sweep file not found"):
        run_sweep(REPO / "sweeps" / "no-such.yaml")


@pytest.mark.parametrize(("settings", "message"), [
    ({"learning_rate": -1.0}, "hamtune.train: learning_rate must be a float in (0, inf), got -1.0"),
    ({"dropout": 1.0}, "hamtune.train: dropout must be a float in [0, 1), got 1.0"),
    ({"weights": "imagenet", "unfreeze_depth": 99}, "unfreeze_depth must be an int in [0, 58] for densenet121"),
    ({"warmup_epochs": 1}, "warmup_epochs does not apply with weights none"),
    ({"model": "resnet50"}, "space.models[0] must be one of"),
])
def test_train_refuses_bad_settings_before_any_data_or_model(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        train(**{"weights": "none", **settings})
    assert message in str(error.value)


def test_the_readme_example_uses_only_the_public_api() -> None:
    tree = ast.parse(readme_example(), "README.md")
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hamtune"}
    assert {"load_sweep", "run_sweep", "open_experiment"} <= used <= set(hamtune.__all__)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.backbone
def test_the_readme_example_runs_as_written(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> None:
    """The example as written (`run_tiny_sweep`, the session's tiny sweep): it ran the sweep, printed the
    leaderboard and the study's best parameters, and exported the best trial."""
    experiment = run_tiny_sweep(tmp_path_factory, hamtune_cache)
    root = experiment.parents[1]
    assert (experiment / "trials.parquet").is_file() and (root / "best-model" / "model.keras").is_file()
    out = (root / "example.out").read_text()
    assert "val_macro_f1" in out and "learning_rate" in out
