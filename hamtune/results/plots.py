"""hamtune's own figures of a sweep's analysis and of a refit's test result: rendering only.

Only what Optuna does not draw lives here (per-class scores, learning curves by phase, confusion
matrices); Optuna's own plots of the study come from `hamtune.results.studyplots`. Every function takes
what `hamtune.results.analysis` computed and returns a matplotlib `Figure` built with the object API (no
pyplot state, Agg canvas), so it works on headless nodes and in tests. Figures use constrained
layout and are saved with a tight bounding box, so long model and class names are never clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hamtune.labels import CLASSES

DPI = 110


def label(metric: str) -> str:
    """`val_macro_f1` -> `validation macro F1`, for axis labels."""
    words = metric.removeprefix("val_").replace("_", " ")
    words = words.replace("f1", "F1").replace("auc", "AUC").replace("mel ", "melanoma ")
    return f"validation {words}" if metric.startswith("val_") else words


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colours(models: Sequence[str]) -> dict[str, str]:
    """One fixed colour per model, the same in every figure of a report."""
    palette = [f"C{i}" for i in range(10)]
    return {model: palette[i % 10] for i, model in enumerate(sorted(set(models)))}


def save(figure: Figure, path: Path) -> Path:
    """`figure` as a PNG at `path` (tight bounding box), for papers and the report."""
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def per_class_scores(per_class: pd.DataFrame) -> Figure:
    """Validation recall and precision per class of each model's best trial (`analysis.per_class`),
    one bar per model in each class, so a class a model never finds stands out at once."""
    figure = _figure(11, 4.2)
    colours = _colours(per_class["model"])
    models = list(dict.fromkeys(per_class["model"]))
    width = 0.8 / max(len(models), 1)
    positions = np.arange(len(CLASSES))
    for ax, kind in zip(figure.subplots(1, 2, sharey=True), ("recall", "precision")):
        for i, model in enumerate(models):
            rows = per_class[per_class["model"] == model].set_index("class").reindex(list(CLASSES))
            ax.bar(positions + (i - (len(models) - 1) / 2) * width, rows[kind], width, color=colours[model],
                   label=f"{model} ({rows['trial_id'].iloc[0]})")
        ax.set_xticks(positions, list(CLASSES))
        ax.set_xlabel("class")
        ax.set_ylabel(f"validation {kind}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, axis="y")
    figure.axes[0].legend(loc="best", fontsize="small")
    figure.suptitle("Per-class validation recall and precision of each model's best trial")
    return figure


def learning_curves(curves: pd.DataFrame, metric: str, names: dict[str, str]) -> Figure:
    """Validation metric and training loss per epoch of the top trials; squares mark fine-tuning epochs.

    `names` maps each trial id to its legend entry (e.g. "#1 a1b2c3d4 densenet121").
    """
    figure = _figure(11, 4.2)
    left, right = figure.subplots(1, 2)
    for i, (trial_id, rows) in enumerate(curves.groupby("trial_id", sort=False)):
        colour = f"C{i % 10}"
        for ax, column in ((left, metric), (right, "train_loss")):
            ax.plot(rows["epoch"], rows[column], marker="o", color=colour,
                    label=names.get(trial_id, trial_id))
            tuned = rows[rows["phase"] == 2]
            ax.scatter(tuned["epoch"], tuned[column], marker="s", s=60, facecolors="none", edgecolors=colour)
    for ax, ylabel in ((left, label(metric)), (right, "training loss (weighted cross-entropy)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = left.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="s", linestyle="", markerfacecolor="none", markeredgecolor="0.3"))
    labels.append("fine-tuning epoch")
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    figure.suptitle("Learning curves of the top trials")
    return figure


def confusion_matrix(matrix: np.ndarray, title: str) -> Figure:
    """A 7x7 confusion matrix with class names; counts in the cells, colour by row share."""
    from sklearn.metrics import ConfusionMatrixDisplay

    figure = _figure(6.4, 5.4)
    ax = figure.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    display = ConfusionMatrixDisplay(matrix, display_labels=list(CLASSES))
    display.plot(ax=ax, colorbar=False, values_format="d", cmap="Blues")
    display.im_.set_data(shares)  # colour by row share: a rare class's errors stay visible
    display.im_.set_clim(0, 1)
    for (i, j), text in np.ndenumerate(display.text_):
        text.set_color("white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    figure.colorbar(display.im_, ax=ax, label="share of the true class (row)")
    ax.set_title(title, fontsize="medium")
    return figure
