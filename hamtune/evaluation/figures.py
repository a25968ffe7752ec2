"""The final evaluation's own figure: reliability diagrams (confidence against accuracy)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hamtune.evaluation.calibration import expected_calibration_error, reliability
from hamtune.results.plots import _figure


def reliability_diagram(y_true: np.ndarray, probas: dict[str, np.ndarray]) -> Figure:
    """One line per variant: accuracy against mean confidence in each confidence bin, on test.

    A calibrated model lies on the diagonal; marker areas grow with the images in the bin.
    """
    figure = _figure(6.4, 5.2)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for i, (name, proba) in enumerate(probas.items()):
        table = reliability(y_true, proba)
        ece = expected_calibration_error(y_true, proba)
        ax.plot(table["confidence"], table["accuracy"], color=f"C{i}", marker=None, label=f"{name} (ECE {ece:.3f})")
        ax.scatter(table["confidence"], table["accuracy"], s=8 + 400 * table["count"] / len(y_true), color=f"C{i}",
                   alpha=0.6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean top-label confidence in the bin", ylabel="accuracy in the bin",
           title="Test reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return figure
