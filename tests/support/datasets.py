"""Copies of the real HAM10000 sample in the Kaggle layout, edited to carry one problem each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hamtune.data.layout import KAGGLE_METADATA


SAMPLE_COUNTS = {"nv": 82, "bkl": 15, "mel": 9, "bcc": 9, "df": 4, "vasc": 3, "akiec": 2}


PART_1 = "HAM10000_images_part_1"


def make_kaggle_copy(
    tmp_path: Path, sample_dir: Path, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None
) -> Path:
    """A Kaggle-layout copy of the sample: images symlinked, metadata written (after `edit`).

    Data rows are written in the sample's order, so row i of the frame is CSV line i + 2.
    """
    root = tmp_path / "ham"
    (root / PART_1).mkdir(parents=True)
    for image in sorted((sample_dir / PART_1).iterdir()):
        (root / PART_1 / image.name).symlink_to(image)
    frame = sample_metadata(sample_dir)
    (edit(frame) if edit else frame).to_csv(root / KAGGLE_METADATA, index=False)
    return root


def sample_metadata(sample_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sample_dir / KAGGLE_METADATA, dtype=str, keep_default_na=False)
