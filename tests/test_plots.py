"""Every figure renders to a valid, labelled PNG from a hand-built two-model sweep."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hamtune import plots
from hamtune.analysis import Analysis, analyze, confusion, learning_curves
from tests.handmade import confusion as handmade_confusion
from tests.handmade import epoch_rows, trial_row, write_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes, min_side: int = 200) -> tuple[int, int]:
    """`data` is a PNG that Pillow decodes fully; returns its size."""
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and min(image.size) >= min_side
        return image.size


def two_model_sweep(directory: Path, n: int = 12) -> Path:
    """`n` trials alternating ConvNeXt-Small and DenseNet121, macro F1 rising with the learning rate."""
    trials, epochs = [], []
    for i in range(n):
        model = ("convnext_small", "densenet121")[i % 2]
        trial = trial_row(f"trial{i:02d}", model, score=0.3 + 0.03 * i, learning_rate=10 ** (-5 + 3 * i / n),
                          dropout=0.04 * i, unfreeze_depth=i % 4, class_weight_power=(i % 3) / 2,
                          gpus=0.5, confusion_matrix=handmade_confusion(4 + i % 3))
        trials.append(trial)
        epochs += epoch_rows(trial, [trial["val_macro_f1"] - 0.05, trial["val_macro_f1"]])
    return write_results(directory, trials, epochs, name="two-models")


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze([str(two_model_sweep(tmp_path_factory.mktemp("plots")))], top=5)


def render(figure, tmp_path: Path) -> bytes:  # noqa: ANN001 - a matplotlib Figure
    path = plots.save(figure, tmp_path / "figure.png")
    return path.read_bytes()


def axis_labels(figure) -> list[str]:  # noqa: ANN001
    return [label for ax in figure.axes for label in (ax.get_xlabel(), ax.get_ylabel()) if label]


def test_optimization_history_against_trials_and_gpu_hours(analysis: Analysis, tmp_path: Path) -> None:
    figure = plots.optimization_history(analysis.history, analysis.metric, analysis.hours_unit)
    assert {"trials run", "cumulative GPU-hours", "validation macro F1"} <= set(axis_labels(figure))
    width, height = assert_png(render(figure, tmp_path))
    assert width > height


def test_metric_against_each_parameter_coloured_by_model(analysis: Analysis, tmp_path: Path) -> None:
    ranked = analysis.trials[analysis.trials["rank"].notna()]
    figure = plots.metric_vs_parameters(ranked, analysis.metric)
    assert len(figure.axes) == 4 and figure.axes[0].get_xscale() == "log"
    assert "learning rate (log scale)" in axis_labels(figure)
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["convnext_small", "densenet121"]
    assert_png(render(figure, tmp_path))


def test_parallel_coordinates_has_one_line_per_trial(analysis: Analysis, tmp_path: Path) -> None:
    ranked = analysis.trials[analysis.trials["rank"].notna()]
    figure = plots.parallel_coordinates(ranked, analysis.metric)
    lines = figure.axes[0].collections[0]
    assert len(lines.get_segments()) == len(ranked) == 12
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks == ["model", "learning rate", "dropout", "unfreeze depth", "class weight power",
                     "validation macro F1"]
    assert_png(render(figure, tmp_path))


def test_importance_bars_name_the_evaluator(analysis: Analysis, tmp_path: Path) -> None:
    figure = plots.importance_bars(analysis.importance.table, analysis.metric)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles[0].startswith("all models\nfANOVA, 12 trials")
    assert any("PED-ANOVA, 6 trials" in title for title in titles)  # per model: too few for fANOVA
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
