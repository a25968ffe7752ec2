"""Analysis of result tables: hand-built ones with known numbers, every degenerate case, and a real sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from hamtune.results.analysis import analyze, load_results, rank_trials, run_order
from hamtune.errors import ConfigError, ExperimentError
from hamtune.search.storage import JOURNAL_FILE, StudyLocation
from hamtune.store.tables import TRIALS_SCHEMA
from tests.support.handmade import SPACE, epoch_rows, trial_row, write_results
from tests.support.real_sweep import run_tiny_sweep

# scikit-learn-free numbers: every value below follows from tests.support.handmade.trial_row.
TRIALS = [
    trial_row("d1", "densenet121", 0.60, learning_rate=1e-3, train_seconds=3600.0),
    trial_row("c1", "convnext_small", 0.70, learning_rate=1e-4, train_seconds=7200.0),
    trial_row("d2", "densenet121", 0.40, learning_rate=1e-2, train_seconds=1800.0),
    trial_row("c2", "convnext_small", 0.50, train_seconds=3600.0),
    trial_row("e1", "densenet121", math.nan, status="ERROR", error="TrialDiverged: loss became nan",
              train_seconds=900.0),
]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    # Epochs table in the order the trials first reported: c2, d1, c1, d2 (e1 never reported).
    epochs = [*epoch_rows(TRIALS[3], [0.5]), *epoch_rows(TRIALS[0], [0.5, 0.6]),
              *epoch_rows(TRIALS[1], [0.6, 0.7]), *epoch_rows(TRIALS[2], [0.4])]
    return write_results(tmp_path / "exp", TRIALS, epochs, name="alpha")


def test_leaderboard_ranks_scored_trials_best_first(sweep_dir: Path) -> None:
    analysis = analyze([str(sweep_dir)], top=3)
    board = analysis.leaderboard
    assert board["trial_id"].tolist() == ["c1", "d1", "c2"]
    assert board["rank"].tolist() == [1, 2, 3]
    assert board["val_macro_f1"].tolist() == pytest.approx([0.7, 0.6, 0.5])
    assert "sweep" not in board  # one sweep: no sweep column
    errored = analysis.trials[analysis.trials["trial_id"] == "e1"]
    assert errored["rank"].isna().all()
    assert any("1 of 5 trials failed (errored or diverged)" in note and "TrialDiverged" in note
               for note in analysis.notes)


def test_model_comparison_counts_scores_and_training_hours(sweep_dir: Path) -> None:
    models = analyze([str(sweep_dir)]).models.set_index("model")
    dense, convnext = models.loc["densenet121"], models.loc["convnext_small"]
    assert (dense["trials"], dense["failed"], dense["best_trial"]) == (3, 1, "d1")
    assert dense["best_val_macro_f1"] == pytest.approx(0.6)
    assert dense["median_val_macro_f1"] == pytest.approx(0.5)  # of 0.6 and 0.4
    assert dense["val_balanced_accuracy"] == pytest.approx(0.7)  # best trial's: 0.6 + 0.1
    assert dense["training_hours"] == pytest.approx((3600 + 1800 + 900) / 3600)
    assert convnext["training_hours"] == pytest.approx(3.0)
    assert "gpu_hours" not in models  # no trial had a GPU: no GPU-hours claimed


def test_gpu_hours_weight_training_time_by_the_gpu_share(tmp_path: Path) -> None:
    trials = [trial_row("a", score=0.5, gpus=0.5, train_seconds=7200.0),
              trial_row("b", score=0.4, gpus=1.0, train_seconds=3600.0)]
    analysis = analyze([str(write_results(tmp_path, trials))])
    assert analysis.hours_unit == "GPU-hours"
    assert analysis.models.loc[0, "gpu_hours"] == pytest.approx(0.5 * 2 + 1.0 * 1)


def test_per_class_scores_of_each_models_best_trial(sweep_dir: Path) -> None:
    per_class = analyze([str(sweep_dir)]).per_class
    assert set(per_class["trial_id"]) == {"c1", "d1"}
    mel = per_class[(per_class["model"] == "densenet121") & (per_class["class"] == "mel")].iloc[0]
    assert mel["recall"] == pytest.approx(0.6) and mel["precision"] == pytest.approx(0.6)
    assert mel["support"] == 5  # 4 right + 1 wrong in the handmade confusion matrix row
    assert len(per_class) == 2 * 7


def test_run_order_follows_the_order_trials_first_reported(sweep_dir: Path) -> None:
    analysis = analyze([str(sweep_dir)])
    assert run_order(analysis.trials, analysis.epochs)["trial_id"].tolist() == ["c2", "d1", "c1", "d2", "e1"]


def test_sources_say_where_each_sweep_and_its_study_are(sweep_dir: Path) -> None:
    source = analyze([str(sweep_dir)]).sources["alpha"]
    assert source.trials_at == str(sweep_dir / "trials.parquet")
    assert source.space == SPACE and source.study is None  # no journal: an older experiment
    (sweep_dir / JOURNAL_FILE).touch()
    assert analyze([str(sweep_dir)]).sources["alpha"].study == StudyLocation(str(sweep_dir / JOURNAL_FILE), "alpha")


def test_loss_is_ranked_lowest_first(sweep_dir: Path) -> None:
    board = analyze([str(sweep_dir)], metric="val_loss").leaderboard
    assert board["trial_id"].tolist()[:2] == ["c1", "d1"]  # val_loss = 2 - score
    assert board.columns[board.columns.get_loc("best_epoch") + 1] == "val_loss"


def test_a_running_sweep_is_analysed_with_a_note(tmp_path: Path) -> None:
    trials = [trial_row("done", score=0.5), trial_row("busy", score=0.6, status="RUNNING")]
    analysis = analyze([str(write_results(tmp_path, trials))])
    assert analysis.leaderboard["trial_id"].tolist() == ["busy", "done"]
    assert any("1 trial(s) still running" in note for note in analysis.notes)


def test_uris_are_read_through_pyarrow_filesystems(sweep_dir: Path) -> None:
    analysis = analyze([f"file://{sweep_dir}"])
    assert analysis.leaderboard["trial_id"].tolist()[0] == "c1"
    assert analysis.epochs is not None  # epochs.parquet found next to it, through the URI too


def test_several_sweeps_merge_with_a_sweep_column(tmp_path: Path) -> None:
    first = write_results(tmp_path / "a", [trial_row("x1", score=0.3)], name="same")
    second = write_results(tmp_path / "b", [trial_row("x1", score=0.8)], name="same", split_seed=7)
    analysis = analyze([str(first), str(second / "trials.parquet")])
    assert analysis.sweeps == ("same", "same-2")
    assert analysis.leaderboard[["sweep", "trial_id"]].values.tolist() == [["same-2", "x1"], ["same", "x1"]]
    assert any("different data or splits" in note for note in analysis.notes)


# --- degenerate tables ------------------------------------------------------------------------


def test_empty_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="holds no trials yet"):
        analyze([str(write_results(tmp_path, []))])


def test_all_failed_is_a_clear_error_with_the_reasons(tmp_path: Path) -> None:
    trials = [trial_row(f"t{i}", status="ERROR", error="OOM: out of memory", val_macro_f1=None) for i in range(2)]
    trials.append(trial_row("d", status="DIVERGED", error="TrialDiverged: loss became nan", val_macro_f1=None))
    with pytest.raises(ExperimentError, match=r"all 3 trials failed .*OOM: out of memory \(x2\); TrialDiverged"):
        analyze([str(write_results(tmp_path, trials))])


def test_nan_metrics_are_left_unranked_with_a_note(tmp_path: Path) -> None:
    trials = [trial_row("ok", score=0.5), trial_row("nan", score=math.nan)]
    analysis = analyze([str(write_results(tmp_path, trials))])
    assert analysis.leaderboard["trial_id"].tolist() == ["ok"]
    assert any("have no val_macro_f1 (NaN or missing)" in note and "nan" in note for note in analysis.notes)


def test_only_nan_metrics_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="no trial has a finite val_macro_f1"):
        analyze([str(write_results(tmp_path, [trial_row("a", score=math.nan)]))])


def test_one_trial_gives_partial_results_and_says_so(tmp_path: Path) -> None:
    analysis = analyze([str(write_results(tmp_path, [trial_row("only", score=0.42)]))])
    assert analysis.leaderboard["trial_id"].tolist() == ["only"]
    assert analysis.importance.table.empty
    notes = " ".join(analysis.notes)
    assert "only one ranked trial" in notes and "only one model" in notes
    assert "1 scored trial(s), at least 3 needed" in notes


def test_one_model_only_has_no_all_models_scope(tmp_path: Path) -> None:
    trials = [trial_row(f"t{i}", score=0.1 * i, dropout=0.05 * i) for i in range(1, 5)]
    analysis = analyze([str(write_results(tmp_path, trials))])
    assert analysis.models["model"].tolist() == ["densenet121"]
    assert set(analysis.importance.table["scope"]) == {"densenet121"}


def test_older_schema_without_optional_columns_is_read_with_a_note(tmp_path: Path) -> None:
    dropped = {"gpus", "confusion_matrix", "unfreeze_depth", "node"}
    schema = pa.schema([field for field in TRIALS_SCHEMA if field.name not in dropped])
    trials = [trial_row("a", score=0.5), trial_row("b", score=0.6)]
    analysis = analyze([str(write_results(tmp_path, trials, schema=schema, schema_version="0"))])
    assert analysis.leaderboard["trial_id"].tolist() == ["b", "a"]
    assert analysis.leaderboard["unfreeze_depth"].isna().all()
    assert analysis.per_class["support"].isna().all()  # no confusion matrix to count from
    notes = " ".join(analysis.notes)
    assert "schema version 0" in notes and "missing (older schema?)" in notes and "confusion_matrix" in notes


def test_table_without_a_required_column_is_a_clear_error(tmp_path: Path) -> None:
    schema = pa.schema([field for field in TRIALS_SCHEMA if field.name != "model"])
    path = write_results(tmp_path, [trial_row("a")], schema=schema, schema_version="0")
    with pytest.raises(ExperimentError, match=r"column\(s\) model missing \(schema version 0\)"):
        analyze([str(path)])


def test_missing_epochs_table_only_costs_learning_curves(tmp_path: Path) -> None:
    analysis = analyze([str(write_results(tmp_path, [trial_row("a", score=0.3), trial_row("b", score=0.5)]))])
    assert analysis.epochs is None
    assert run_order(analysis.trials, analysis.epochs)["trial_id"].tolist() == ["a", "b"]  # trial-id order
    assert any("no readable epochs.parquet" in note for note in analysis.notes)


@pytest.mark.parametrize(("path", "message"), [
    ("nowhere", "no such file or directory"),
    ("empty_dir", "no trials.parquet in this directory"),
    ("not_parquet.parquet", "not a readable Parquet table"),
])
def test_bad_paths_are_clear_errors(tmp_path: Path, path: str, message: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "not_parquet.parquet").write_text("hello")
    with pytest.raises(ExperimentError, match=message):
        load_results([str(tmp_path / path)])


def test_no_path_is_a_clear_error() -> None:
    with pytest.raises(ExperimentError, match="no result table given"):
        load_results([])


def test_unknown_metric_and_bad_top_are_config_errors(sweep_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--metric must be one of .*val_macro_f1.*got 'f1'"):
        analyze([str(sweep_dir)], metric="f1")
    with pytest.raises(ConfigError, match="--top must be >= 1, got 0"):
        analyze([str(sweep_dir)], top=0)


def test_rank_ties_break_on_macro_f1_then_trial_id() -> None:
    trials = pd.DataFrame([trial_row("b", score=0.5), trial_row("a", score=0.5), trial_row("c", score=0.5)])
    trials.loc[2, "val_balanced_accuracy"] = 0.6
    trials.loc[2, "val_macro_f1"] = 0.55
    ranked, _ = rank_trials(trials, "val_balanced_accuracy")
    assert ranked["trial_id"].tolist() == ["c", "a", "b"]


# --- a real sweep -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> Path:
    return run_tiny_sweep(tmp_path_factory, hamtune_cache)


@pytest.mark.slow
@pytest.mark.ray
def test_analysis_of_a_real_sweep(tiny_sweep: Path) -> None:
    analysis = analyze([str(tiny_sweep)])
    assert analysis.sweeps == ("notebook",)
    assert len(analysis.trials) == 2 and analysis.trials["rank"].notna().all()
    assert analysis.leaderboard["val_macro_f1"].is_monotonic_decreasing
    assert analysis.models.loc[0, "trials"] == 2 and analysis.hours_unit == "training hours"
    assert analysis.models.loc[0, "training_hours"] > 0
    split = pd.read_csv(tiny_sweep / "split.csv")
    assert analysis.per_class["support"].sum() == (split["split"] == "val").sum()
    assert analysis.sources["notebook"].study == StudyLocation(str(tiny_sweep / JOURNAL_FILE), "notebook")
