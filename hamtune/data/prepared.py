"""Data prepared once by the driver and shipped to every trial.

The driver resolves the data source, validates it and computes the split exactly once; trials
receive the resulting `PreparedData` through Ray's object store, so no trial re-reads metadata
and every trial trains and validates on the same images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hamtune.config import DataConfig
from hamtune.data.cache import default_cache_dir
from hamtune.data.index import DatasetIndex
from hamtune.data.layout import load_dataset
from hamtune.data.split import split_dataset
from hamtune.data.synth import ensure_synthetic
from hamtune.errors import DataError

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class PreparedData:
    """A validated dataset index, its lesion-grouped split and where to cache decoded images."""

    index: DatasetIndex
    split: pd.DataFrame
    image_size: int
    cache_dir: Path
    split_seed: int

    def positions(self, name: str) -> np.ndarray:
        """Row positions in `index.table` (and so in the image cache) of one split, in id order."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        in_split = self.split.set_index("image_id")["split"].reindex(self.index.table["image_id"])
        return np.flatnonzero(in_split.to_numpy() == name)

    def labels(self, positions: np.ndarray) -> np.ndarray:
        return self.index.table["label"].to_numpy()[positions].astype("int32")


def resolve_data_dir(data: DataConfig, cache_dir: Path) -> Path:
    """The local directory holding the dataset: the configured one, or synthetic data made on first use."""
    if data.dir is None:
        synthetic = data.synthetic
        return ensure_synthetic(
            cache_dir / "synthetic", images=synthetic.images, seed=synthetic.seed, size=(600, 450)
        )
    path = Path(data.dir).expanduser()
    if "://" in data.dir and not data.dir.startswith("file://"):
        raise DataError(
            f"data.dir {data.dir!r}: remote data URIs are not supported yet; "
            "copy the dataset to a local directory on every node and set data.dir to it"
        )
    if data.dir.startswith("file://"):
        path = Path(data.dir.removeprefix("file://"))
    if not path.is_dir():
        raise DataError(f"data.dir {str(path)!r} is not a directory")
    return path.resolve()


def prepare_data(data: DataConfig) -> PreparedData:
    """Resolve, validate and split the dataset described by `data` (the driver does this once)."""
    cache_dir = Path(data.cache_dir).expanduser() if data.cache_dir else default_cache_dir()
    root = resolve_data_dir(data, cache_dir)
    index = load_dataset(root, format=data.format)
    split = split_dataset(
        index.table, val=data.val_fraction, test=data.test_fraction, seed=data.split_seed
    )
    logger.info("dataset %s: %d images, fingerprint %s", root, len(index), index.fingerprint)
    return PreparedData(
        index=index, split=split, image_size=data.image_size, cache_dir=cache_dir,
        split_seed=data.split_seed,
    )
