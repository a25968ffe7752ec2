"""Real sweeps for tests: the README's API example as the session's tiny sweep (analysis, report, refit), and
real dev-set subsets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.shared import REPO
from tests.support.sweeps import hamtune_env, tiny_sweep_yaml


#: What marks the README's Python API example: the python block after it is run as written.
EXAMPLE_MARKER = "<!-- python-api-example"


def readme_example() -> str:
    """The README's Python API example: the first python block after its marker."""
    text = (REPO / "README.md").read_text()
    return text[text.index(EXAMPLE_MARKER):].split("```python\n", 1)[1].split("```", 1)[0]


def run_tiny_sweep(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """Run (once per session) the README's Python API example on two one-epoch DenseNet121 trials; returns
    the experiment it wrote.

    The example runs as written, in a subprocess as a notebook would (so Ray never starts in the
    test process), in a directory whose `sweeps/smoke.yaml` is a tiny sweep: synthetic 32 px images,
    transfer mode from the suite's weights file. Its output is kept beside it (`example.out`), and
    the experiment lives under the session's base temp directory, so every test module that asks
    gets the same one.
    """
    root = tmp_path_factory.getbasetemp() / "tiny-sweep"
    experiment = root / "hamtune-runs" / "notebook"
    if not (experiment / "trials.parquet").is_file():
        (root / "sweeps").mkdir(parents=True, exist_ok=True)
        (root / "sweeps" / "smoke.yaml").write_text(
            tiny_sweep_yaml("smoke", Path("hamtune-runs"), models=("densenet121",), trials=2, epochs=1))
        (root / "example.py").write_text(readme_example())
        result = subprocess.run([sys.executable, "example.py"], cwd=root, env=hamtune_env(cache),
                                capture_output=True, text=True, timeout=900)
        (root / "example.out").write_text(result.stdout)
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
