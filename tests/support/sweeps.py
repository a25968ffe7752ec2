"""Real but tiny sweeps: their sweep files, the backbone weights files they fine-tune from, their environment."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


@functools.cache
def backbone_weights_file(model: str) -> str:
    """A weights file of `model`'s backbone without its top, random init, made once per session.

    Plumbing tests (faults, resume, clusters, tables) run in transfer mode from it: the frozen
    backbone makes them fast and gives them both phases. They prove plumbing only; that models
    learn is tested on real data in tests/training/test_learning.py.
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


def hamtune_env(cache: Path) -> dict[str, str]:
    """Environment for a `hamtune` subprocess: the session cache, quiet TensorFlow, no Ray usage stats."""
    env = dict(os.environ)
    env.update(HAMTUNE_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="3", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    return env
