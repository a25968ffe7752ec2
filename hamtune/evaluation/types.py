"""What an evaluation produces, shared by the command that computes it and the artefact writer.

In a module of their own so that `evaluate` (which decides) and `artefact` (which writes) both
depend on them rather than on each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Variant(NamedTuple):
    """A way to turn the refits into test predictions, with its out-of-fold counterpart."""

    name: str
    test: np.ndarray  # (test images, classes)
    oof: np.ndarray  # (train+val images, classes)


class Evaluation(NamedTuple):
    out: Path
    report: dict[str, Any]  # the content of evaluation.json
