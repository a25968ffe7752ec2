"""The dataset index: one row per usable image, the contract between reading and everything after.

Readers of every on-disk layout produce a `DatasetIndex`; splits, class weights, the image
cache and the trials only ever see this, so a new layout is one reader and nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hamtune.labels import LABEL_OF

#: Columns of `DatasetIndex.table`, in order.
INDEX_COLUMNS: tuple[str, ...] = ("image_id", "lesion_id", "dx", "label", "path", "size_bytes")


@dataclass(frozen=True)
class DatasetIndex:
    """A validated dataset: `table` holds `INDEX_COLUMNS`, sorted by `image_id`, one row per image.

    `path` is absolute. `fingerprint` identifies the content (ids, lesions, labels and file sizes)
    independently of where the files live, so every node of a cluster computes the same value
    for the same copy of the data.
    """

    root: Path
    format: str
    table: pd.DataFrame
    fingerprint: str

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def from_table(cls, root: Path, format: str, table: pd.DataFrame) -> DatasetIndex:
        """Normalise `table` (sort, label, column order) and compute its fingerprint."""
        table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
        table = table.assign(label=table["dx"].map(LABEL_OF).astype("int64"))
        table = table.loc[:, list(INDEX_COLUMNS)]
        return cls(root=Path(root).resolve(), format=format, table=table, fingerprint=fingerprint(table))


def fingerprint(table: pd.DataFrame) -> str:
    """A short content hash of (image_id, lesion_id, dx, size_bytes) rows, order-independent."""
    rows = table.sort_values("image_id")[["image_id", "lesion_id", "dx", "size_bytes"]]
    digest = hashlib.sha256()
    for row in rows.itertuples(index=False):
        digest.update("\t".join(map(str, row)).encode() + b"\n")
    return digest.hexdigest()[:16]
