"""Text formats of an analysis and the self-contained HTML report with its PNGs."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from hamtune.analysis import Analysis, analyze
from hamtune.errors import ConfigError
from hamtune.report import REPORT_FILE, format_analysis, markdown_table, per_class_wide, write_report
from tests.handmade import trial_row, write_results
from tests.real_sweep import run_tiny_sweep
from tests.test_plots import assert_png, two_model_sweep

PLOTS = {"optimization_history", "metric_vs_parameters", "parallel_coordinates", "importance",
         "learning_curves", "confusion_matrix"}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze([str(two_model_sweep(tmp_path_factory.mktemp("report")))], top=3)


def test_table_format_has_every_section_and_the_notes(analysis: Analysis) -> None:
    text = format_analysis(analysis, "table")
    for heading in ("Top 3 trials by val_macro_f1:", "Models (gpu_hours: fit time x GPU share, summed over trials):",
                    "Per-class validation recall and precision of each model's best trial:",
                    "Hyperparameter importance for val_macro_f1 (evaluator: fANOVA, PED-ANOVA):", "Notes:"):
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


def check_report(files: list[Path], out: Path) -> str:
    """The report is first, every PNG is valid, and the HTML embeds exactly those PNGs and nothing remote."""
    assert files[0] == out / REPORT_FILE
    for png in files[1:]:
        assert_png(png.read_bytes())
    html = files[0].read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(files) - 1
    for data in embedded:
        assert_png(base64.b64decode(data))
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    return html


def test_report_embeds_every_plot_and_table(analysis: Analysis, tmp_path: Path) -> None:
    files = write_report(analysis, tmp_path / "out")
    assert {path.stem for path in files[1:]} == PLOTS
    html = check_report(files, tmp_path / "out")
    assert "<h2>Top 3 trials by val_macro_f1</h2>" in html and html.count("<table") == 4
    assert "6 trials are too few for fANOVA" in html


def test_report_of_a_single_trial_leaves_out_what_cannot_be_drawn(tmp_path: Path) -> None:
    one = analyze([str(write_results(tmp_path / "one", [trial_row("solo", confusion_matrix=None)]))])
    files = write_report(one, tmp_path / "out")
    assert {path.stem for path in files[1:]} == {"optimization_history", "metric_vs_parameters",
                                                 "parallel_coordinates"}
    html = check_report(files, tmp_path / "out")
    assert "only one ranked trial" in html


@pytest.mark.slow
def test_report_of_a_real_sweep(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path, tmp_path: Path) -> None:
    experiment = run_tiny_sweep(tmp_path_factory, hamtune_cache)
    files = write_report(analyze([str(experiment)]), tmp_path)
    assert {path.stem for path in files[1:]} == PLOTS - {"importance"}  # two trials: too few to assess
    html = check_report(files, tmp_path)
    assert "2 scored trial(s), at least 3 needed" in html
