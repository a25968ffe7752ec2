"""Trials on Keras's JAX backend (`training.backend: jax`), each in a process of its own.

Keras fixes its backend at its first import and this test process runs it on TensorFlow, so
every JAX run here is a subprocess: tests/support/backend_probe.py for what differs by backend (run on
both and compared), tests/support/jax_trial.py for a whole trial, and the `hamtune sweep` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hamtune.data.synth import write_synthetic
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


@pytest.mark.ray
def test_a_sweep_with_backend_jax_runs_end_to_end_tables_and_export_included(
    tmp_path: Path, hamtune_cache: Path
) -> None:
    """One DenseNet121 trial at 32 px under JAX through `hamtune sweep` (head-only epoch, then
    the top block); its best checkpoint then exported here, on TensorFlow: checkpoints do not
    depend on the backend. One batch per epoch, so XLA compiles each phase's step once."""
    settings = yaml.safe_load(tiny_sweep_yaml("jax", tmp_path / "runs", models=("densenet121",), trials=1,
                                              images=150, max_concurrent=1))
    settings["training"].update(backend="jax", batch_size=256)
    sweep_file = tmp_path / "jax.yaml"
    sweep_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    run_python(["-m", "hamtune", "sweep", str(sweep_file)], hamtune_cache)

    experiment = tmp_path / "runs" / "jax"
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert list(trials["status"]) == ["TERMINATED"] and trials["val_macro_f1"].notna().all()
    assert sorted(epochs["epoch"]) == [1, 2] and list(epochs.sort_values("epoch")["phase"]) == [1, 2]
    assert json.loads((experiment / "config.json").read_text())["training"]["backend"] == "jax"

    from hamtune.cli import main

    assert main(["export", str(experiment), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "model.keras").is_file()
