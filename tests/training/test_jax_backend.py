"""Trials on Keras's JAX backend (`training.backend: jax`), each in a process of its own.

Keras fixes its backend at its first import and this test process runs it on TensorFlow, so
every JAX run here is a subprocess: tests/support/backend_probe.py for what differs by backend (run on
both and compared), tests/support/jax_trial.py for a whole trial, and the `hamtune sweep` command.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hamtune.data.synth import write_synthetic
from hamtune.labels import CLASSES
from tests.support.shared import REPO
from tests.support.sweeps import backbone_weights_file, hamtune_env, tiny_sweep_yaml

pytestmark = [pytest.mark.slow, pytest.mark.jax]  # every test starts Keras in a new process; the trials compile DenseNet121 with XLA


def run_python(args: list[str], cache: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python ARGS` from the repository root, with KERAS_BACKEND unset: hamtune must choose it."""
    env = {key: value for key, value in hamtune_env(cache).items() if key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def probes(hamtune_cache: Path) -> dict[str, dict]:
    return {backend: json.loads(run_python(["-m", "tests.support.backend_probe", backend], hamtune_cache).stdout)
            for backend in ("tensorflow", "jax")}


def test_checkpoint_keys_are_the_same_on_both_backends(probes: dict[str, dict]) -> None:
    """A checkpoint written under JAX loads into a model built under TensorFlow (export) and back."""
    assert probes["jax"]["keys"] == probes["tensorflow"]["keys"]
    assert len(probes["jax"]["keys"]["model"]) > 600 and "trial_adam/iteration" in probes["jax"]["keys"]["optimizer"]


def test_augmentation_is_jit_safe_under_jax_also_once_loaded_from_a_keras_file(probes: dict[str, dict]) -> None:
    """Under JAX the rotation and zoom are jax.numpy: marked jit-safe when built and again when a
    `.keras` file is loaded, or `predict` would run a loaded model op by op. TensorFlow keeps
    Keras's mark (its kernels have no XLA version)."""
    assert probes["jax"]["not_jit_safe"] == {"built": [], "loaded": []}
    tensorflow = probes["tensorflow"]["not_jit_safe"]
    assert tensorflow["built"] == tensorflow["loaded"] == ["random_rotation", "random_zoom"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_make_dataset_and_the_predictor_on_each_backend(probes: dict[str, dict], backend: str) -> None:
    pipeline = probes[backend]["pipeline"]
    assert pipeline["dataset"] == {"tensorflow": "_OptionsDataset", "jax": "CacheBatches"}[backend]
    assert pipeline["batch"] == [["uint8", [4, 8, 8, 3]], ["int32", [4]]]
    first, second = pipeline["shuffled_epochs"]
    assert sorted(first) == sorted(second) == list(range(3, 13)) and first != second  # reshuffled per epoch
    assert pipeline["predictor_matches_predict"]
    assert probes[backend]["tensorflow_imported"] == (backend == "tensorflow")


def test_a_jax_trial_trains_checkpoints_resumes_and_exports_without_tensorflow(
    tmp_path: Path, hamtune_cache: Path
) -> None:
    """Transfer mode under JAX: head-only epoch, then the top block unfrozen; a resume from the
    first epoch's checkpoint; the same trial again on the warm model, which trains exactly as the
    first did without compiling again; the last checkpoint restored, saved as .keras and loaded back."""
    data = write_synthetic(tmp_path / "data", images=150, seed=2, size=(96, 72))
    run_python(["-m", "tests.support.jax_trial", str(data), str(hamtune_cache), backbone_weights_file("densenet121"),
                str(tmp_path)], hamtune_cache)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["backend"] == "jax" and result["dataset"] == "CacheBatches"
    assert [(row["epoch"], row["phase"]) for row in result["first"]] == [(1, 1), (2, 2)]
    assert [(row["epoch"], row["phase"]) for row in result["resumed"]] == [(2, 2)]
    assert all(row["train_loss"] == row["train_loss"] for row in result["first"] + result["resumed"])  # not NaN
    first, again = result["first"], result["again"]
    assert [(row["epoch"], row["phase"]) for row in again] == [(1, 1), (2, 2)]
    for cold, warm in zip(first, again, strict=True):
        assert warm["train_loss"] == pytest.approx(cold["train_loss"], rel=1e-5)
        assert warm["val_macro_f1"] == pytest.approx(cold["val_macro_f1"], abs=1e-9)
    # Both phases' steps were compiled by the first run (XLA: minutes on 2 cores); the warm run
    # trains two one-batch epochs.
    assert again[-1]["train_seconds"] < 0.25 * first[-1]["train_seconds"], (first, again)
    assert result["loaded_matches_restored"]
    assert result["imported"] == []  # neither TensorFlow nor Ray nor Optuna


@pytest.fixture(scope="module")
def jax_experiment(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> Path:
    """One DenseNet121 trial at 32 px under JAX through `hamtune sweep` (head-only epoch, then
    the top block). One batch per epoch, so XLA compiles each phase's step once."""
    root = tmp_path_factory.mktemp("jax")
    settings = yaml.safe_load(tiny_sweep_yaml("jax", root / "runs", models=("densenet121",), trials=1,
                                              images=150, max_concurrent=1))
    settings["training"].update(backend="jax", batch_size=256)
    sweep_file = root / "jax.yaml"
    sweep_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    run_python(["-m", "hamtune", "sweep", str(sweep_file)], hamtune_cache)
    return root / "runs" / "jax"


@pytest.mark.ray
def test_a_sweep_with_backend_jax_runs_end_to_end_tables_and_export_included(
    tmp_path: Path, jax_experiment: Path
) -> None:
    """The sweep's tables, then its best checkpoint exported here, on TensorFlow: checkpoints do
    not depend on the backend."""
    trials = pd.read_parquet(jax_experiment / "trials.parquet")
    epochs = pd.read_parquet(jax_experiment / "epochs.parquet")
    assert list(trials["status"]) == ["TERMINATED"] and trials["val_macro_f1"].notna().all()
    assert sorted(epochs["epoch"]) == [1, 2] and list(epochs.sort_values("epoch")["phase"]) == [1, 2]
    assert json.loads((jax_experiment / "config.json").read_text())["training"]["backend"] == "jax"

    from hamtune.cli import main

    assert main(["export", str(jax_experiment), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "model.keras").is_file()


@pytest.mark.ray
def test_evaluate_of_a_jax_sweep_trains_in_process_on_jax(tmp_path: Path, jax_experiment: Path,
                                                          hamtune_cache: Path, sample_dir: Path) -> None:
    """`hamtune evaluate` without --address trains its fold runs and refit in its own process, on
    the sweep's backend: with KERAS_BACKEND unset it picks JAX itself (a process already on
    TensorFlow is refused before any run: test_device), and the final model it writes reproduces
    the evaluated test probabilities (checked before writing) and classifies real images. One
    configuration, 2 folds, each run capped at its head-only epoch."""
    out = tmp_path / "final"
    run_python(["-m", "hamtune", "evaluate", str(jax_experiment), "--top", "1", "--folds", "2",
                "--epochs", "1", "--out", str(out)], hamtune_cache)
    report = json.loads((out / "evaluation.json").read_text())
    assert report["config"]["training"]["backend"] == "jax"
    assert report["reproduction_max_difference"] <= 1e-4
    assert [row["variant"] for row in report["variants"]][:2] == ["sweep's best, refit", "CV-chosen, refit"]
    assert report["final_variant"] in {row["variant"] for row in report["variants"]}
    assert (out / "model.keras").is_file() and (out / "saved_model").is_dir()

    images = sorted(sample_dir.rglob("*.jpg"))[:3]
    predicted = run_python(["-m", "hamtune", "predict", str(out), *map(str, images), "--format", "csv"],
                           hamtune_cache)
    rows = pd.read_csv(io.StringIO(predicted.stdout))
    assert len(rows) == 3 and rows[[f"p_{name}" for name in CLASSES]].sum(axis=1).round(3).eq(1).all(), predicted.stdout
