"""Text formats of an analysis and the self-contained HTML report: Optuna's interactive plots, hamtune's PNGs."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from hamtune.results.analysis import Analysis, analyze
from hamtune.errors import ConfigError
from hamtune.results.report import REPORT_FILE, format_analysis, markdown_table, per_class_wide, write_report
from hamtune.results.studyplots import PLOTS
from tests.support.handmade import trial_row, write_results
from tests.support.real_sweep import run_tiny_sweep
from tests.support.figures import assert_png
from tests.support.handmade import two_model_sweep
from tests.support.studies import keep_study

OWN_PLOTS = {"learning_curves", "per_class_scores", "confusion_matrix"}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze([str(two_model_sweep(tmp_path_factory.mktemp("report")))], top=3)


def test_table_format_has_every_section_and_the_notes(analysis: Analysis) -> None:
    text = format_analysis(analysis, "table")
    for heading in ("Top 3 trials by val_macro_f1:", "Models (gpu_hours: fit time x GPU share, summed over trials):",
                    "Per-class validation recall and precision of each model's best trial:",
                    "Hyperparameter importance for val_macro_f1 (evaluator: fANOVA, PED-ANOVA):",
                    "Rung fidelity of val_macro_f1:", "Notes:"):
        assert heading in text
    assert "densenet121 recall" in text and "convnext_small precision" in text


def test_markdown_format_is_pipe_tables(analysis: Analysis) -> None:
    text = format_analysis(analysis, "markdown")
    assert "## Top 3 trials by val_macro_f1" in text
    board = text.split("## Top 3 trials by val_macro_f1\n")[1].split("\n\n")[0].splitlines()
    assert board[0].startswith("| rank | trial_id | model |") and board[1].startswith("|---:|---|---|")
    assert len(board) == 2 + 3


def test_markdown_table_renders_missing_values_as_dashes() -> None:
    table = pd.DataFrame({"name": ["a", "b"], "value": [0.123456, float("nan")]})
    assert markdown_table(table) == "| name | value |\n|---|---:|\n| a | 0.1235 |\n| b | - |"


def test_csv_format_has_one_parsable_block_per_section(analysis: Analysis) -> None:
    blocks = format_analysis(analysis, "csv").split("\n\n")
    assert blocks[0].startswith("# Top 3 trials by val_macro_f1\n")
    board = pd.read_csv(io.StringIO(blocks[0].split("\n", 1)[1]))
    assert board["trial_id"].tolist() == analysis.leaderboard["trial_id"].tolist()


def test_json_format_is_machine_readable(analysis: Analysis) -> None:
    payload = json.loads(format_analysis(analysis, "json"))
    assert payload["metric"] == "val_macro_f1" and payload["sweeps"] == ["two-models"]
    assert [row["trial_id"] for row in payload["leaderboard"]] == ["trial11", "trial10", "trial09"]
    assert len(payload["per_class"]) == 14 and payload["per_class"][0].keys() >= {"class", "recall", "precision"}
    assert {row["evaluator"] for row in payload["importance"]} == {"fANOVA", "PED-ANOVA"}
    assert payload["hours_unit"] == "GPU-hours" and payload["models"][0]["gpu_hours"] == pytest.approx(1.5)


def test_unknown_format_is_a_config_error(analysis: Analysis) -> None:
    with pytest.raises(ConfigError, match="--format must be one of table, markdown, csv, json, got 'xml'"):
        format_analysis(analysis, "xml")


def test_per_class_support_is_shared_when_every_model_saw_the_same_split() -> None:
    long = pd.DataFrame([{"model": m, "trial_id": m, "class": c, "support": 3, "precision": 0.5, "recall": 0.25,
                          "f1": 0.3} for m in ("a", "b") for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")])
    wide = per_class_wide(long)
    assert wide.columns.tolist() == ["class", "support", "a recall", "a precision", "b recall", "b precision"]


def check_report(files: list[Path], out: Path, own: set[str], optuna_plots: list[str]) -> str:
    """The report comes first and every PNG is valid; the HTML inlines hamtune's `own` PNGs, plotly.js
    exactly once and one interactive figure per Optuna plot, and refers to nothing outside itself."""
    from plotly.offline import get_plotlyjs

    assert files[0] == out / REPORT_FILE
    assert {path.stem for path in files[1:]} == own | set(optuna_plots)
    for png in files[1:]:
        assert_png(png.read_bytes())
    html = files[0].read_text(encoding="utf-8")
    assert html.count(get_plotlyjs()) == 1
    html = html.replace(get_plotlyjs(), "")  # the library's own strings name its web site
    assert "* plotly.js v" not in html
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(own)
    for data in embedded:
        assert_png(base64.b64decode(data))
    assert html.count('class="plotly-graph-div"') == len(optuna_plots)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)
    return html


def test_report_embeds_every_plot_and_table(analysis: Analysis, tmp_path: Path) -> None:
    files = write_report(analysis, tmp_path / "out")
    html = check_report(files, tmp_path / "out", OWN_PLOTS, list(PLOTS))
    assert "<h2>Top 3 trials by val_macro_f1</h2>" in html and html.count("<table") == 5
    assert "6 trials are too few for fANOVA" in html
    for title in ("Optimisation history", "Parallel coordinates", "Hyperparameter importances", "Slice plots",
                  "Contours over the continuous hyperparameters"):
        assert f"<h3>{title}</h3>" in html
    assert "two-models: kept no Optuna study; Optuna&#x27;s plots draw a study rebuilt in memory" in html


def test_report_of_a_single_trial_leaves_out_what_cannot_be_drawn(tmp_path: Path) -> None:
    one = analyze([str(write_results(tmp_path / "one", [trial_row("solo", confusion_matrix=None)]))])
    files = write_report(one, tmp_path / "out")
    html = check_report(files, tmp_path / "out", {"per_class_scores"},
                        [plot for plot in PLOTS if plot != "param_importances"])
    assert "only one ranked trial" in html


def test_several_sweeps_get_one_section_each_and_named_pngs(tmp_path: Path) -> None:
    first = write_results(tmp_path / "first", [trial_row("a"), trial_row("b", score=0.6)], name="first")
    keep_study(first, "first", [0.5, 0.6])
    second = write_results(tmp_path / "second", [trial_row("c", score=0.4)], name="second")
    files = write_report(analyze([str(first), str(second)]), tmp_path / "out")
    drawn = [f"{sweep}-{plot}" for sweep in ("first", "second") for plot in PLOTS if plot != "param_importances"]
    html = check_report(files, tmp_path / "out", {"per_class_scores", "confusion_matrix"}, drawn)
    assert "<h2>Optuna's plots of first</h2>" in html and "<h2>Optuna's plots of second</h2>" in html
    assert "first: Optuna&#x27;s plots draw the study the sweep kept" in html
    assert "second: kept no Optuna study" in html


@pytest.mark.slow
@pytest.mark.ray
def test_report_of_a_real_sweep(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path, tmp_path: Path) -> None:
    experiment = run_tiny_sweep(tmp_path_factory, hamtune_cache)
    files = write_report(analyze([str(experiment)]), tmp_path)
    drawn = [plot for plot in PLOTS if plot != "param_importances"]  # two trials: too few to assess
    html = check_report(files, tmp_path, OWN_PLOTS, drawn)
    assert "2 scored trial(s), at least 3 needed" in html
    assert "notebook: Optuna&#x27;s plots draw the study the sweep kept (study &#x27;notebook&#x27;" in html
