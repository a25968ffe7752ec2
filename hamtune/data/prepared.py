"""Data prepared once by the driver and shipped to every trial.

The driver resolves the data source, validates it and computes the split exactly once; trials
receive the resulting `PreparedData` through Ray's object store, so no trial re-reads metadata
and every trial trains and validates on the same images. A trial may run on another node than
the driver: `PreparedData.on_this_node` finds that node's copy of the same files (generated,
fetched or already there) and points the index at it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hamtune.config import DataConfig
from hamtune.data.cache import default_cache_dir
from hamtune.data.index import DatasetIndex
from hamtune.data.layout import load_dataset
from hamtune.data.remote import fetch_dataset, is_uri
from hamtune.data.split import split_dataset
from hamtune.data.synth import ensure_synthetic
from hamtune.errors import DataError
from hamtune.keys import SPLITS
from hamtune.store.experiment import ExperimentDir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """A validated dataset index, its lesion-grouped split and where to cache decoded images.

    `config` is where the data comes from, kept so that each node can find its own copy.
    """

    index: DatasetIndex
    split: pd.DataFrame
    cache_dir: Path
    config: DataConfig

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def split_seed(self) -> int:
        return self.config.split_seed

    def on_this_node(self) -> PreparedData:
        """This data as seen from the node the caller runs on: its own copy and its own cache.

        The source is resolved again here (synthetic data generated into this node's cache, a
        URI fetched into it, a local directory that must exist here), the index is moved to it
        and every indexed file is checked for the size the driver saw. Split, fingerprint and
        labels stay the driver's: nothing is re-read or re-split.
        """
        cache_dir = node_cache_dir(self.config)
        root = resolve_data_dir(self.config, cache_dir)
        return dataclasses.replace(self, index=relocate(self.index, root), cache_dir=cache_dir)

    def positions(self, name: str) -> np.ndarray:
        """Row positions in `index.table` (and so in the image cache) of one split, in id order."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        in_split = self.split.set_index("image_id")["split"].reindex(self.index.table["image_id"])
        return np.flatnonzero(in_split.to_numpy() == name)

    def labels(self, positions: np.ndarray) -> np.ndarray:
        return self.index.table["label"].to_numpy()[positions].astype("int32")


def node_cache_dir(data: DataConfig) -> Path:
    """The image and dataset cache of the node this runs on (a default is resolved per node)."""
    return Path(data.cache_dir).expanduser() if data.cache_dir else default_cache_dir()


def resolve_data_dir(data: DataConfig, cache_dir: Path) -> Path:
    """The local directory holding the dataset on this node.

    None: synthetic data, generated into `cache_dir` on first use. A URI (s3://, gs://,
    file://): its files, fetched into `cache_dir` once per node. Anything else: a directory
    that must exist on this node, used in place.
    """
    if data.dir is None:
        synthetic = data.synthetic
        return ensure_synthetic(
            cache_dir / "synthetic", images=synthetic.images, seed=synthetic.seed, size=(600, 450)
        )
    if is_uri(data.dir):
        return fetch_dataset(data.dir, cache_dir).path.resolve()
    path = Path(data.dir).expanduser()
    if not path.is_dir():
        raise DataError(f"data.dir {str(path)!r} is not a directory on {socket.gethostname()}")
    return path.resolve()


def relocate(index: DatasetIndex, root: Path) -> DatasetIndex:
    """`index` with its image paths moved from `index.root` to `root`, every file checked there.

    The fingerprint does not depend on where files live, so it is kept; a missing file or one
    of another size means this node's copy is not the data the driver indexed.
    """
    root = Path(root).resolve()
    table = index.table
    if root != index.root:
        prefix = f"{index.root}{os.sep}"
        outside = ~table["path"].str.startswith(prefix)
        if outside.any():
            raise DataError(f"image {table['path'][outside].iloc[0]} is not under the dataset root {index.root}")
        table = table.assign(path=f"{root}{os.sep}" + table["path"].str.slice(len(prefix)))
    found = table["path"].map(_size_or_missing)
    differ = found.ne(table["size_bytes"])
    if differ.any():
        missing = int(found[differ].isna().sum())
        raise DataError(
            f"the dataset at {root} on {socket.gethostname()} is not the one the driver indexed: "
            f"{missing} of {len(table)} images missing, {int(differ.sum()) - missing} of another size "
            f"(first: {table['path'][differ].iloc[0]}). Every node needs the same copy: give data.dir "
            "as an s3://, gs:// or file:// URI to have each node fetch it"
        )
    return DatasetIndex(root=root, format=index.format, table=table, fingerprint=index.fingerprint)


def _size_or_missing(path: str) -> float:
    try:
        return os.stat(path).st_size
    except OSError:
        return float("nan")


def prepare_data(data: DataConfig) -> PreparedData:
    """Resolve, validate and split the dataset described by `data` (the driver does this once)."""
    cache_dir = node_cache_dir(data)
    root = resolve_data_dir(data, cache_dir)
    index = load_dataset(root, format=data.format)
    split = split_dataset(
        index.table, val=data.val_fraction, test=data.test_fraction, seed=data.split_seed
    )
    logger.info("dataset %s: %d images, fingerprint %s", root, len(index), index.fingerprint)
    return PreparedData(index=index, split=split, cache_dir=cache_dir, config=data)


def prepare_saved(data: DataConfig, experiment: ExperimentDir, needs: str) -> PreparedData:
    """The dataset with the split an experiment saved, refused if the data changed since.

    Resume and refit must see the data the sweep selected on; `needs` ends the message
    ("resume needs the same data").
    """
    prepared = prepare_data(data)
    recorded = experiment.info().get("fingerprint")
    if recorded != prepared.index.fingerprint:
        raise DataError(
            f"the dataset changed since {experiment.uri} started (fingerprint {recorded} then, "
            f"{prepared.index.fingerprint} now); {needs}"
        )
    return dataclasses.replace(prepared, split=experiment.split())
