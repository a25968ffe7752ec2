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
