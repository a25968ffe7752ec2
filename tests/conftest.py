"""Shared fixtures: where the real HAM10000 sample lives (used in place, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HAMTUNE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def tiny_sweep_yaml(name: str, storage: Path, models: tuple[str, ...] = ("convnext_small", "densenet121"),
                    trials: int = 2, epochs: int = 2, extra: str = "") -> str:
    """A real but tiny sweep: synthetic data, 32 px, random-init backbones, one trial per model first."""
    points = "\n".join(
        f"    - {{model: {m}, learning_rate: 1.0e-3, dropout: 0.2, class_weight_power: 0.5, unfreeze_depth: 1}}"
        for m in models
    )
    depths = ", ".join(f"{m}: {{low: 0, high: 1}}" for m in models)
    return f"""name: {name}
data:
  dir: null
  image_size: 32
  synthetic: {{images: 200, seed: 0}}
space:
  models: [{", ".join(models)}]
  unfreeze_depth: {{{depths}}}
search:
  seed: 0
  trials: {trials}
  max_concurrent: 2
  points_to_evaluate:
{points}
scheduler: none
training: {{epochs: {epochs}, warmup_epochs: 1, batch_size: 32, patience: {epochs}, weights: none, mixed_precision: false}}
resources: {{cpus_per_trial: 1, gpus_per_trial: 0}}
storage: {storage}
failures: {{max_retries: 1}}
{extra}"""


def hamtune_env(cache: Path) -> dict[str, str]:
    """Environment for a `hamtune` subprocess: the session cache, quiet TensorFlow, no Ray usage stats."""
    env = dict(os.environ)
    env.update(HAMTUNE_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="3", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    return env
