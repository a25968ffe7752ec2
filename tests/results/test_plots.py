"""Each of hamtune's own figures renders to a valid, labelled PNG from a hand-built two-model sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hamtune.results import plots
from hamtune.results.analysis import Analysis, analyze, confusion, learning_curves
from tests.support.figures import assert_png
from tests.support.handmade import two_model_sweep



@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze([str(two_model_sweep(tmp_path_factory.mktemp("plots")))], top=5)


def render(figure, tmp_path: Path) -> bytes:  # noqa: ANN001 - a matplotlib Figure
    path = plots.save(figure, tmp_path / "figure.png")
    return path.read_bytes()


def axis_labels(figure) -> list[str]:  # noqa: ANN001
    return [label for ax in figure.axes for label in (ax.get_xlabel(), ax.get_ylabel()) if label]


def test_per_class_scores_show_recall_and_precision_of_each_models_best_trial(analysis: Analysis,
                                                                             tmp_path: Path) -> None:
    figure = plots.per_class_scores(analysis.per_class)
    recall, precision = figure.axes
    assert (recall.get_ylabel(), precision.get_ylabel()) == ("validation recall", "validation precision")
    assert [t.get_text() for t in recall.get_xticklabels()] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert len(recall.patches) == len(precision.patches) == 2 * 7  # one bar per model and class
    heights = sorted(bar.get_height() for bar in recall.patches)
    assert heights == pytest.approx(sorted(analysis.per_class["recall"]))
    legend = [text.get_text() for text in recall.get_legend().get_texts()]
    assert legend == ["densenet121 (trial11)", "convnext_small (trial10)"]
    assert_png(render(figure, tmp_path))


def test_learning_curves_of_the_top_trials(analysis: Analysis, tmp_path: Path) -> None:
    curves = learning_curves(analysis.epochs, analysis.leaderboard)
    assert curves["trial_id"].unique().tolist() == analysis.leaderboard["trial_id"].tolist()
    figure = plots.learning_curves(curves, analysis.metric, {"trial11": "#1 trial11 densenet121"})
    assert figure.axes[0].get_lines()[0].get_label() == "#1 trial11 densenet121"
    assert {"epoch", "training loss (weighted cross-entropy)"} <= set(axis_labels(figure))
    assert_png(render(figure, tmp_path))


def test_confusion_matrix_shows_counts_and_class_names(analysis: Analysis, tmp_path: Path) -> None:
    matrix = confusion(analysis.trials.iloc[0])
    figure = plots.confusion_matrix(matrix, "best trial")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    cells = sorted(int(text.get_text()) for text in ax.texts)
    assert cells == sorted(np.asarray(matrix).ravel().tolist())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert_png(render(figure, tmp_path))


def test_confusion_matrix_copes_with_an_absent_class(tmp_path: Path) -> None:
    matrix = np.zeros((7, 7), dtype=int)
    matrix[5, 5] = 10
    assert_png(render(plots.confusion_matrix(matrix, "only nevi"), tmp_path))


@pytest.mark.parametrize(("metric", "text"), [
    ("val_macro_f1", "validation macro F1"), ("val_mel_recall", "validation melanoma recall"),
    ("val_auc_macro", "validation AUC macro"), ("val_loss", "validation loss"),
])
def test_metric_labels_are_readable(metric: str, text: str) -> None:
    assert plots.label(metric) == text
