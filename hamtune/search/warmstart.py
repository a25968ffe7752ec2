"""Warm starts: seed a new sweep's Optuna study with the trials of earlier sweeps.

TPE starts modelling once the study holds its start-up number of trials, so a study seeded with
earlier results skips the random start-up and suggests informed configurations from the first
trial. Only results that mean the same thing are used: an earlier sweep on other data (dataset
fingerprint), at another image size or in another training mode is refused, unless
`search.warm_start_any_data` says to use it anyway; trials whose parameters fall outside the new
space are skipped and counted.

An earlier trial is told as COMPLETE with its score when it ran to its end (its planned epochs,
or its patience); a trial the scheduler stopped is told as PRUNED with its last value, as
`hamtune.search.searcher` tells live trials.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution

from hamtune.errors import ConfigError, ExperimentError
from hamtune.search.space import define_space, params_from_row, unfreeze_parameter
from hamtune.store.tables import is_ranked, locate_tables, read_table
from hamtune.keys import OBJECTIVE, WARM_START_ATTR

if TYPE_CHECKING:
    from hamtune.config import SweepConfig

logger = logging.getLogger(__name__)

#: The user attribute that names where a warm-start trial came from ("SOURCE#TRIAL_ID").


@dataclass(frozen=True)
class WarmStart:
    """The earlier trials to add to a new study, and how many were left out because they do not fit."""

    trials: list[optuna.trial.FrozenTrial]
    skipped: int


def distributions_of(sweep: SweepConfig) -> dict[str, dict[str, BaseDistribution]]:
    """Each model's parameter distributions in the sweep's space, as `define_space` declares them."""
    study = optuna.create_study(direction=OBJECTIVE.direction)
    found = {}
    for model in sweep.space.models:
        study.enqueue_trial({"model": model})
        trial = study.ask()
        define_space(trial, sweep.space)
        found[model] = dict(trial.distributions)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return found


def warm_start(sweep: SweepConfig, fingerprint: str) -> WarmStart:
    """The finished trials of `search.warm_start`'s sweeps that fit this sweep's space."""
    spaces = distributions_of(sweep)
    trials, skipped = [], 0
    for i, source in enumerate(sweep.search.warm_start):
        try:
            table, metadata = read_table(locate_tables(source).trials)
        except ExperimentError as error:
            raise ConfigError(f"{sweep.source}: search.warm_start[{i}]: {error}") from None
        old = json.loads(metadata.get("config", "{}"))
        if not sweep.search.warm_start_any_data:
            _check_same_problem(sweep, source, fingerprint, metadata, old, table)
        for row in table.to_dict("records"):
            trial = _frozen(row, old, spaces, source)
            if trial is None:
                skipped += 1
            else:
                trials.append(trial)
    return WarmStart(trials, skipped)


def _check_same_problem(sweep: SweepConfig, source: str, fingerprint: str, metadata: dict[str, str],
                        old: dict[str, Any], table: Any) -> None:
    differences = []
    if metadata.get("dataset_fingerprint") != fingerprint:
        differences.append(f"dataset fingerprint {metadata.get('dataset_fingerprint')} there, {fingerprint} here")
    size = old.get("data", {}).get("image_size")
    if size != sweep.data.image_size:
        differences.append(f"image_size {size} there, {sweep.data.image_size} here")
    for model, mode in sorted(set(zip(table["model"], table["mode"]))):
        if model in sweep.space.models and mode != sweep.training.mode_for(model):
            differences.append(f"{model} trained {mode} there, {sweep.training.mode_for(model)} here")
    if differences:
        raise ConfigError(
            f"{sweep.source}: search.warm_start: {source} is another problem ({'; '.join(differences)}): its "
            "scores do not carry over; set search.warm_start_any_data: true to use them anyway"
        )


def _frozen(row: dict[str, Any], old: dict[str, Any], spaces: dict[str, dict[str, BaseDistribution]],
            source: str) -> optuna.trial.FrozenTrial | None:
    """An earlier trial as Optuna would have recorded it, or None if it has no score or does not fit."""
    model = row["model"]
    if model not in spaces or not is_ranked(row):
        return None
    distributions = spaces[model]
    params = params_from_row(row)
    if unfreeze_parameter(model) not in distributions:  # trained from scratch here: its depth is not searched
        params.pop(unfreeze_parameter(model), None)
    if set(params) != set(distributions):
        return None
    training, scheduler = old.get("training", {}), old.get("scheduler", {})
    epochs, best = int(row["epochs_completed"]), int(row["best_epoch"])
    patience = training.get("patience")
    ran_out = epochs >= int(scheduler.get("max_epochs") or training.get("epochs", epochs)) or (
        patience is not None and epochs - best >= int(patience))
    score = float(row[OBJECTIVE.name])
    try:
        return optuna.trial.create_trial(
            params=params, distributions=distributions,
            state=optuna.trial.TrialState.COMPLETE if ran_out else optuna.trial.TrialState.PRUNED,
            value=score if ran_out else None, intermediate_values={epochs: score},
            user_attrs={WARM_START_ATTR: f"{source}#{row['trial_id']}"},
        )
    except ValueError:  # a value outside the new space's range
        return None


def seed_study(storage: optuna.storages.BaseStorage, sweep: SweepConfig, warm: WarmStart) -> None:
    """Create the sweep's study in `storage` holding the warm-start trials (OptunaSearch then loads it)."""
    study = optuna.create_study(storage=storage, study_name=sweep.name, direction=OBJECTIVE.direction, load_if_exists=True)
    study.add_trials(warm.trials)
    logger.info("warm start: %d earlier trial(s) added to the study%s", len(warm.trials),
                f", {warm.skipped} skipped (no score, or outside this sweep's space)" if warm.skipped else "")
