"""Optuna's own plots of each analysed sweep's study: interactive (plotly) for the HTML report, PNG for papers.

Optuna already draws the optimisation history, parallel coordinates, parameter importances,
slices and contours, so hamtune does not redraw them: `optuna.visualization` gives the report
its interactive figures and `optuna.visualization.matplotlib` the PNGs of the same plots.

The study is the one the sweep kept (`hamtune.search.storage`) when it scores the analysed metric. An
experiment that kept none (older than persistent studies, or a table without its directory),
one whose storage cannot be read or holds no scored trial, or an analysis by another metric
gets an in-memory study rebuilt from the table (`hamtune.results.offline_study`) instead; the view's note
says which was drawn. Trials that ASHA stopped (PRUNED in the study) are drawn with the score
they had reached, as the tables rank them (`scored`).
Several experiments give one study each, never merged: their spaces and trial numbers differ.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hamtune.results.analysis import LOWER_IS_BETTER, Analysis, run_order
from hamtune.keys import FLOAT_HYPERPARAMETERS, OBJECTIVE, WARM_START_ATTR
from hamtune.results.importance import MIN_TRIALS, evaluator_for
from hamtune.results.plots import label, save
from hamtune.results.offline_study import distributions, quiet_optuna, rebuilt_study

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

#: Optuna's plots in report order, by the name of their `optuna.visualization` function.
PLOTS = ("optimization_history", "parallel_coordinate", "param_importances", "slice", "contour")


class StudyView(NamedTuple):
    """The study drawn for one sweep, and a note saying where it came from."""

    sweep: str
    study: optuna.Study
    note: str


def study_view(analysis: Analysis, sweep: str) -> StudyView:
    """The study the sweep kept if it scores `analysis.metric` and can be read, else one rebuilt from its table."""
    source = analysis.sources[sweep]
    kept = source.study
    if kept is None:
        why = "kept no Optuna study"
    elif analysis.metric != OBJECTIVE.name:
        why = f"kept a study of {OBJECTIVE.name}, not {analysis.metric}"
    else:
        try:
            with quiet_optuna():
                study = kept.load()
        except Exception as error:  # KeyError (no such study), SQLAlchemy and driver errors
            why = f"kept a study that could not be read ({type(error).__name__}: {error})"
        else:
            drawn, stopped = scored(study)
            if _complete(drawn):
                warm = sum(WARM_START_ATTR in trial.user_attrs for trial in study.trials)
                return StudyView(sweep, drawn, (
                    f"{sweep}: Optuna's plots draw the study the sweep kept (study {kept.name!r} in "
                    f"{kept.storage}: {_complete(study)} complete of {len(study.trials)} trials"
                    + (f", {warm} of them warm-start trials from earlier sweeps" if warm else "")
                    + (f"; the {stopped} trials the scheduler stopped are drawn with the score they had reached, "
                       "as trials.parquet has it)" if stopped else ")")))
            why = "kept a study with no scored trial"
    trials = analysis.trials[(analysis.trials["sweep"] == sweep) & analysis.trials["rank"].notna()]
    epochs = None if analysis.epochs is None else analysis.epochs[analysis.epochs["sweep"] == sweep]
    study = rebuilt_study(run_order(trials, epochs), analysis.metric,
                          distributions(trials, [source.space] if source.space else []),
                          maximize=analysis.metric not in LOWER_IS_BETTER, name=sweep)
    return StudyView(sweep, study, (
        f"{sweep}: {why}; Optuna's plots draw a study rebuilt in memory from the {len(trials)} ranked "
        f"trials of {source.trials_at}"))


def scored(study: optuna.Study) -> tuple[optuna.Study, int]:
    """The study, in memory, with each trial the scheduler stopped (PRUNED) counted as COMPLETE at its last
    reported value; and how many were.

    Optuna's plots draw only COMPLETE trials, and under ASHA most trials of a sweep are stopped:
    drawn as they are, a 12-trial sweep shows one or two points. A stopped trial's last value is
    the best val macro F1 it reached, the score `trials.parquet` ranks it by. Trials still running
    or without any value stay out, as Optuna leaves them out.
    """
    import optuna

    stopped = [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
               if trial.intermediate_values]
    if not stopped:
        return study, 0
    with quiet_optuna():
        copy = optuna.create_study(directions=study.directions, study_name=study.study_name)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    for trial in study.get_trials(states=finished):
        if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            trial = optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=trial.intermediate_values[max(trial.intermediate_values)],
                params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
                system_attrs=trial.system_attrs, intermediate_values=trial.intermediate_values)
        copy.add_trial(trial)
    return copy, len(stopped)


def _complete(study: optuna.Study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def plots_of(study: optuna.Study) -> tuple[str, ...]:
    """The plots worth drawing: no importances below `MIN_TRIALS` complete trials, as in hamtune's table."""
    return tuple(plot for plot in PLOTS if plot != "param_importances" or _complete(study) >= MIN_TRIALS)


def _parameters(study: optuna.Study) -> set[str]:
    return {name for trial in study.get_trials(deepcopy=False) for name in trial.params}


def _arguments(study: optuna.Study, plot: str) -> dict[str, Any]:
    """What each plot is called with besides the study: importance by the evaluator hamtune's table
    uses at that trial count; contours only over the continuous parameters (every pair of every
    parameter is a grid nobody reads)."""
    if plot == "param_importances":
        return {"evaluator": evaluator_for(_complete(study))[0]}
    if plot == "contour":
        return {"params": [name for name in FLOAT_HYPERPARAMETERS if name in _parameters(study)]}
    return {}


def _draw(view: StudyView, metric: str, backend: Any, plot: str) -> Any:  # noqa: ANN401 - plotly or matplotlib
    draw: Callable[..., Any] = getattr(backend, f"plot_{plot}")
    with quiet_optuna():
        return draw(view.study, target_name=label(metric), **_arguments(view.study, plot))


def interactive(view: StudyView, metric: str) -> dict[str, go.Figure]:
    """Optuna's plotly figures of the view's study, by plot name."""
    from optuna import visualization

    return {plot: _draw(view, metric, visualization, plot) for plot in plots_of(view.study)}


def write_pngs(view: StudyView, metric: str, out: Path, prefix: str = "") -> dict[str, Path]:
    """The same plots as PNGs through Optuna's matplotlib backend, saved as `out/PREFIXplot.png`."""
    import matplotlib.pyplot as plt  # Optuna's matplotlib backend draws on pyplot figures
    from optuna.visualization import matplotlib

    paths = {}
    for plot in plots_of(view.study):
        axes = _draw(view, metric, matplotlib, plot)
        figure = np.ravel(np.asarray(axes, dtype=object))[0].figure  # contour and slice give an array
        if plot == "parallel_coordinate":  # Optuna's default 6.4 in crowds one axis per parameter
            figure.set_size_inches(2 * len(_parameters(view.study)) + 4, 5)
        try:
            paths[plot] = save(figure, out / f"{prefix}{plot}.png")
        finally:
            plt.close(figure)
    return paths
