"""The real development set every from-scratch benchmark trains on, and its sweep settings.

One place for what the benchmarks share (the data, hamtune's search space for DenseNet121 from
scratch at 32 px, the training settings they all fix), so that their arms differ only where the
benchmark says they do.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = REPO.parent / "shared" / "data" / "ham10000-dev"
#: sweeps/dev.yaml's space: DenseNet121 from scratch, so no unfreeze depth.
DEV_SPACE = {"models": ["densenet121"], "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
             "dropout": {"low": 0.0, "high": 0.5}, "class_weight_power": {"low": 0.0, "high": 1.0}}


def dev_sweep(name: str, args: argparse.Namespace, training: dict[str, Any], space: dict[str, Any] | None = None,
              **sections: Any) -> Any:
    """A sweep on `args.data` at `args.size` px (split seed 0, cache in `args.cache`), from scratch
    in float32 with batch 32, validated by hamtune itself (`parse_sweep`).

    `training` adds to (or overrides) those training settings; `space` replaces DEV_SPACE; other
    `sections` (search, scheduler, resources, storage, failures) are passed as they are.
    """
    from hamtune.config import parse_sweep

    return parse_sweep({
        "name": name,
        "data": {"dir": str(args.data), "image_size": args.size, "split_seed": 0, "cache_dir": str(args.cache)},
        "space": DEV_SPACE if space is None else space,
        **sections,
        "training": {"batch_size": 32, "weights": "none", "mixed_precision": False, **training},
    }, source=f"benchmark:{name}")
