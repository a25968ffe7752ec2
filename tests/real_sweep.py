"""One real tiny sweep per test session, shared by the analysis, report and refit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import hamtune_env, tiny_sweep_yaml


def run_tiny_sweep(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """Run (once per session) two one-epoch DenseNet121 trials on synthetic 32 px images; returns the experiment.

    Run through the `hamtune` command in a subprocess, as a user would, so Ray never starts in
    the test process. The result lives under the session's base temp directory, so every test
    module that asks gets the same experiment.
    """
    root = tmp_path_factory.getbasetemp() / "tiny-sweep"
    experiment = root / "runs" / "tiny"
    if not (experiment / "trials.parquet").is_file():
        root.mkdir(exist_ok=True)
        sweep_file = root / "tiny.yaml"
        sweep_file.write_text(tiny_sweep_yaml("tiny", root / "runs", models=("densenet121",), trials=2, epochs=1))
        result = subprocess.run(
            [sys.executable, "-m", "hamtune", "sweep", str(sweep_file)], cwd=root, env=hamtune_env(cache),
            capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return experiment
