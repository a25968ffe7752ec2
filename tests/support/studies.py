"""Optuna studies as a sweep keeps them: built by hand, or read back and checked against the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution

from hamtune.keys import WARM_START_ATTR
from hamtune.search.storage import JOURNAL_FILE, StudyLocation


def keep_study(experiment: Path, name: str, values: list[float], warm: int = 0,
               state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE) -> None:
    """A journal study as a sweep keeps it: `values` as trials in `state`, the first `warm` from a warm start."""
    study = optuna.create_study(study_name=name, direction="maximize", load_if_exists=True,
                                storage=StudyLocation(str(experiment / JOURNAL_FILE), name).open())
    study.add_trials([optuna.trial.create_trial(
        params={"dropout": 0.1 * i}, distributions={"dropout": FloatDistribution(0.0, 1.0)}, state=state,
        value=value if state == optuna.trial.TrialState.COMPLETE else None, intermediate_values={1: value},
        user_attrs={WARM_START_ATTR: "old#x"} if i < warm else {},
    ) for i, value in enumerate(values)])


def study_of(experiment: Path) -> Any:
    """An experiment's persistent Optuna study, loaded the way `optuna.load_study` users do."""
    from hamtune.search.storage import JOURNAL_FILE, StudyLocation

    return StudyLocation(str(experiment / JOURNAL_FILE), experiment.name).load()


def assert_study_agrees_with_tables(experiment: Path) -> dict[str, Any]:
    """The sweep's Optuna study holds exactly the trials of its tables, each with the same parameters,
    its final state (ERROR: FAIL; otherwise COMPLETE, or PRUNED when the scheduler stopped it), the
    trial's score as its value (a PRUNED trial: as its last intermediate value) and one
    intermediate value per epoch, the best val macro F1 so far. Returns the Optuna trials by trial id.
    """
    import optuna
    import pandas as pd

    from hamtune.search.space import unfreeze_parameter
    from hamtune.keys import RAY_TRIAL_ATTR

    state = optuna.trial.TrialState
    study = study_of(experiment)
    by_id = {trial.user_attrs[RAY_TRIAL_ATTR]: trial for trial in study.trials}
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert sorted(by_id) == sorted(trials["trial_id"]) and len(study.trials) == len(trials)
    for row in trials.to_dict("records"):
        trial = by_id[row["trial_id"]]
        expected = {key: row[key] for key in ("model", "learning_rate", "dropout", "class_weight_power")}
        if row["mode"] == "transfer":
            expected[unfreeze_parameter(row["model"])] = row["unfreeze_depth"]
        assert trial.params == pytest.approx(expected), row["trial_id"]
        scores = epochs[epochs["trial_id"] == row["trial_id"]].sort_values("epoch")["val_macro_f1"]
        assert trial.intermediate_values == pytest.approx(dict(enumerate(scores.cummax(), start=1)))
        if row["status"] == "ERROR":
            assert trial.state == state.FAIL
        elif trial.state == state.PRUNED:
            assert trial.intermediate_values[max(trial.intermediate_values)] == pytest.approx(row["val_macro_f1"])
        else:
            assert trial.state == state.COMPLETE and trial.value == pytest.approx(row["val_macro_f1"])
    return by_id
