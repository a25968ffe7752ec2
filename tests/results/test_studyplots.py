"""Which study Optuna's plots draw for each analysed sweep, and that every plot renders in both backends."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hamtune.results.analysis import analyze
from hamtune.search.storage import JOURNAL_FILE, StudyLocation
from hamtune.results.studyplots import PLOTS, interactive, study_view, write_pngs
from tests.support.handmade import epoch_rows, trial_row, write_results
from tests.support.figures import assert_png
from tests.support.handmade import two_model_sweep
from tests.support.studies import keep_study

SCORES = {"b": 0.5, "a": 0.7, "c": 0.6}


def three_trials(directory: Path) -> Path:
    """Trials a, b, c, which first reported in the order b, c, a."""
    trials = [trial_row(name, score=score, learning_rate=10 ** -(i + 2)) for i, (name, score) in
              enumerate(sorted(SCORES.items()))]
    by_name = {row["trial_id"]: row for row in trials}
    epochs = [row for name in ("b", "c", "a") for row in epoch_rows(by_name[name], [by_name[name]["val_macro_f1"]])]
    return write_results(directory, trials, epochs, name="three")



def test_a_sweep_without_a_study_gets_one_rebuilt_from_its_table_in_run_order(tmp_path: Path) -> None:
    analysis = analyze([str(three_trials(tmp_path / "three"))])
    view = study_view(analysis, "three")
    assert [trial.value for trial in view.study.trials] == pytest.approx([0.5, 0.6, 0.7])  # b, c, a
    assert view.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert view.study.trials[0].distributions["learning_rate"].log  # the declared space, not the observed one
    assert view.note == (f"three: kept no Optuna study; Optuna's plots draw a study rebuilt in memory from the 3 "
                         f"ranked trials of {tmp_path / 'three' / 'trials.parquet'}")


def test_the_study_the_sweep_kept_is_drawn_as_it_is(tmp_path: Path) -> None:
    experiment = three_trials(tmp_path / "three")
    keep_study(experiment, "three", [0.2, 0.4, 0.3, 0.9], warm=1)
    view = study_view(analyze([str(experiment)]), "three")
    assert [trial.value for trial in view.study.trials] == pytest.approx([0.2, 0.4, 0.3, 0.9])
    assert view.note == (f"three: Optuna's plots draw the study the sweep kept (study 'three' in "
                         f"{experiment / JOURNAL_FILE}: 4 complete of 4 trials, 1 of them warm-start trials "
                         "from earlier sweeps)")


def test_another_metric_than_the_studys_is_drawn_from_the_table(tmp_path: Path) -> None:
    experiment = three_trials(tmp_path / "three")
    keep_study(experiment, "three", [0.2])
    view = study_view(analyze([str(experiment)], metric="val_loss"), "three")
    assert view.study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [trial.value for trial in view.study.trials] == pytest.approx([1.5, 1.4, 1.3])  # 2 - macro F1
    assert view.note.startswith("three: kept a study of val_macro_f1, not val_loss; Optuna's plots draw a study "
                                "rebuilt in memory from the 3 ranked trials")


def test_a_study_that_cannot_be_read_falls_back_to_the_table(tmp_path: Path) -> None:
    experiment = three_trials(tmp_path / "three")
    keep_study(experiment, "another-name", [0.2])
    view = study_view(analyze([str(experiment)]), "three")
    assert len(view.study.trials) == 3
    assert view.note.startswith("three: kept a study that could not be read (KeyError: ")


def test_trials_the_scheduler_stopped_are_drawn_at_the_score_they_reached(tmp_path: Path) -> None:
    experiment = three_trials(tmp_path / "three")
    keep_study(experiment, "three", [0.2, 0.3], state=optuna.trial.TrialState.PRUNED)
    keep_study(experiment, "three", [0.4])
    view = study_view(analyze([str(experiment)]), "three")
    assert [trial.value for trial in view.study.trials] == pytest.approx([0.2, 0.3, 0.4])
    assert {trial.state for trial in view.study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert view.note.endswith("1 complete of 3 trials; the 2 trials the scheduler stopped are drawn with the "
                              "score they had reached, as trials.parquet has it)")
    kept = optuna.load_study(study_name="three", storage=StudyLocation(str(experiment / JOURNAL_FILE), "three").open())
    assert [trial.state.name for trial in kept.trials] == ["PRUNED", "PRUNED", "COMPLETE"]  # the kept study is untouched


def test_a_study_with_no_scored_trial_falls_back_to_the_table(tmp_path: Path) -> None:
    experiment = three_trials(tmp_path / "three")
    keep_study(experiment, "three", [0.2], state=optuna.trial.TrialState.FAIL)
    view = study_view(analyze([str(experiment)]), "three")
    assert len(view.study.trials) == 3
    assert view.note.startswith("three: kept a study with no scored trial")


def test_every_optuna_plot_renders_interactively_and_as_png(tmp_path: Path) -> None:
    analysis = analyze([str(two_model_sweep(tmp_path / "two"))])
    view = study_view(analysis, "two-models")
    figures = interactive(view, analysis.metric)
    assert tuple(figures) == PLOTS
    assert all(len(figure.data) for figure in figures.values())
    assert figures["optimization_history"].layout.yaxis.title.text == "validation macro F1"
    assert {trace.name for trace in figures["param_importances"].data} == {"validation macro F1"}
    layout = figures["contour"].layout
    titles = {layout[key].title.text for key in layout if key.startswith(("xaxis", "yaxis"))} - {None}
    assert titles == {"learning_rate", "dropout", "class_weight_power"}  # the continuous parameters only
    paths = write_pngs(view, analysis.metric, tmp_path, prefix="two-")
    assert [path.name for path in paths.values()] == [f"two-{plot}.png" for plot in PLOTS]
    for path in paths.values():
        assert_png(path.read_bytes())


def test_too_few_trials_draw_no_importances(tmp_path: Path) -> None:
    analysis = analyze([str(write_results(tmp_path / "two", [trial_row("a"), trial_row("b", score=0.6)]))])
    figures = interactive(study_view(analysis, "handmade"), analysis.metric)
    assert "param_importances" not in figures and "optimization_history" in figures
