"""Real sweeps for tests: one tiny synthetic sweep per session (analysis, report, refit) and real dev-set subsets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.sweeps import hamtune_env, tiny_sweep_yaml


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


def real_subset(dev_dir: Path, out: Path, fraction: float = 0.4, at_least: int = 30) -> Path:
    """A Kaggle-layout dataset of `fraction` of each class's dev-set lesions (but `at_least` of each, or all
    of a rarer class), whole lesions, symlinked: nothing copied."""
    metadata = pd.read_csv(dev_dir / "HAM10000_metadata.csv")
    lesions = metadata.drop_duplicates("lesion_id").groupby("dx", group_keys=False).apply(
        lambda c: c.sample(n=max(int(fraction * len(c)), min(len(c), at_least)), random_state=0))
    subset = metadata[metadata["lesion_id"].isin(set(lesions["lesion_id"]))]
    folder = out / "HAM10000_images_part_1"
    folder.mkdir(parents=True)
    for image_id in subset["image_id"]:
        source = next(dev_dir.glob(f"HAM10000_images_part_*/{image_id}.jpg"))
        (folder / source.name).symlink_to(source)
    subset.to_csv(out / "HAM10000_metadata.csv", index=False)
    return out
