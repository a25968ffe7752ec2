"""Figures of a sweep's analysis and of a refit's test result: rendering only, nothing computed here.

Every function takes what `hamtune.analysis` computed and returns a matplotlib `Figure` built
with the object API (no pyplot state, Agg canvas), so it works on headless nodes and in tests.
Figures use constrained layout and are saved with a tight bounding box, so long model and
class names are never clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter

from hamtune.labels import CLASSES

DPI = 110
_PARAMETERS = (("learning_rate", "learning rate (log scale)"), ("dropout", "dropout rate"),
               ("unfreeze_depth", "unfreeze depth (blocks)"), ("class_weight_power", "class-weight power"))


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
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def optimization_history(history: pd.DataFrame, metric: str, unit: str) -> Figure:
    """Each trial's score and the best so far, against trials run and against compute spent."""
    figure = _figure(11, 4.2)
    colours = _colours(history["model"])
    for ax, x, xlabel in zip(figure.subplots(1, 2, sharey=True), ("trial", "hours"),
                             ("trials run", f"cumulative {unit}")):
        for model, rows in history.groupby("model"):
            ax.scatter(rows[x], rows["value"], color=colours[model], label=model, zorder=3)
        for sweep, rows in history.groupby("sweep", sort=False):
            name = "best so far" if history["sweep"].nunique() == 1 else f"best so far ({sweep})"
            ax.step(rows[x], rows["best_so_far"], where="post", color="0.3", label=name,
                    linestyle="-" if sweep == history["sweep"].iloc[0] else "--")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    figure.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are counted
    figure.axes[0].set_ylabel(label(metric))
    figure.axes[0].legend(loc="best", fontsize="small")
    figure.suptitle(f"Optimisation history: {label(metric)}")
    return figure


def metric_vs_parameters(trials: pd.DataFrame, metric: str) -> Figure:
    """The metric against each hyperparameter, one point per ranked trial, coloured by model."""
    figure = _figure(13, 3.8)
    colours = _colours(trials["model"])
    axes = figure.subplots(1, len(_PARAMETERS), sharey=True)
    for ax, (name, xlabel) in zip(axes, _PARAMETERS):
        for model, rows in trials.groupby("model"):
            ax.scatter(pd.to_numeric(rows[name]), rows[metric], color=colours[model], label=model, alpha=0.85)
        if name == "learning_rate":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-4, 3x10^-4... labels collide
        if name == "unfreeze_depth":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(label(metric))
    axes[0].legend(loc="best", fontsize="small")
    figure.suptitle(f"{label(metric)} against each hyperparameter")
    return figure


def parallel_coordinates(trials: pd.DataFrame, metric: str) -> Figure:
    """One line per ranked trial through every hyperparameter, coloured by the metric."""
    axes_names = ["model", *(name for name, _ in _PARAMETERS), metric]
    models = sorted(trials["model"].unique())
    columns, ticks = [], []
    for name in axes_names:
        if name == "model":
            values = trials["model"].map({m: i for i, m in enumerate(models)}).astype(float)
            span = (0.0, max(len(models) - 1, 1))
            ticks.append([(i / span[1], m) for i, m in enumerate(models)])
        else:
            raw = pd.to_numeric(trials[name], errors="coerce").astype(float)
            values = np.log10(raw) if name == "learning_rate" else raw
            span = (values.min(), values.max())
            if not span[1] > span[0]:  # one value: put it mid-axis
                span = (span[0] - 1, span[0] + 1)
            ticks.append([(0.0, f"{raw.min():.3g}"), (1.0, f"{raw.max():.3g}")] if raw.notna().any() else [])
        columns.append(((values - span[0]) / (span[1] - span[0])).to_numpy())
    ys = np.column_stack(columns)
    xs = np.arange(len(axes_names))
    score = pd.to_numeric(trials[metric]).to_numpy(float)
    figure = _figure(11, 4.8)
    ax = figure.subplots()
    lines = LineCollection([np.column_stack([xs, row]) for row in ys], cmap="viridis",
                           norm=Normalize(np.nanmin(score), np.nanmax(score)), linewidths=1.6, alpha=0.85)
    lines.set_array(score)
    ax.add_collection(lines)
    for x, marks in zip(xs, ticks):
        ax.axvline(x, color="0.5", linewidth=0.8)
        for y, text in marks:
            ax.annotate(text, (x, y), xytext=(4, 0), textcoords="offset points", fontsize="small",
                        va="center", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlim(-0.2, len(axes_names) - 0.6)
    ax.set_ylim(-0.08, 1.08)
    ax.set_xticks(xs, [label(n) if n == metric else n.replace("_", " ") for n in axes_names])
    ax.set_yticks([])
    ax.set_ylabel("position within each axis' range (min to max)")
    figure.colorbar(lines, ax=ax, label=label(metric))
    figure.suptitle("Parallel coordinates of the ranked trials")
    return figure


def importance_bars(table: pd.DataFrame, metric: str) -> Figure:
    """Importance bars, one panel per scope, each titled with the evaluator and trial count."""
    scopes = list(dict.fromkeys(table["scope"]))
    figure = _figure(4.2 * max(len(scopes), 1), 3.4)
    for ax, scope in zip(np.atleast_1d(figure.subplots(1, max(len(scopes), 1))), scopes):
        rows = table[table["scope"] == scope].sort_values("importance")
        ax.barh(rows["parameter"].str.replace("_", " "), rows["importance"], color="C0")
        first = rows.iloc[0]
        ax.set_title(f"{scope}\n{first['evaluator']}, {first['trials']} trials", fontsize="medium")
        ax.set_xlabel("importance (share of the scope's total)")
        ax.set_xlim(0, 1)
    figure.suptitle(f"Hyperparameter importance for {label(metric)}")
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
