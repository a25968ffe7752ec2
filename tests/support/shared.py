"""The shared real data the suite reads in place (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("HAMTUNE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def shared_data(name: str, what: str) -> Path:
    """`SHARED_DATA / name`, or the test fails saying what is missing and how to point at it."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"{what} not found at {path} (set HAMTUNE_SHARED_DATA)")
    return path
