"""The sweep's searcher: Ray's OptunaSearch, telling Optuna which trials ASHA stopped.

Ray's `OptunaSearch.on_trial_complete` tells Optuna every trial that ends as COMPLETE with its
last score, so a trial that ASHA stopped after 2 of 20 epochs would reach TPE as if its 2-epoch
score were what the configuration finally gives. Optuna has a state for exactly that, PRUNED:
its TPE ranks pruned trials by how far they got and by their last intermediate value, below
every complete trial. `PruningOptunaSearch` tells such trials as PRUNED, with the per-epoch
intermediate values `on_trial_result` already reported. A trial that errored (after its retries)
is told as FAIL, whatever it reported before, as the tables record it. A trial the study already
holds as finished (told just before a driver was killed, then run again by `--resume`) is left as
it is.

A trial tells its own end: the report of its last epoch carries `FINISHED_KEY` (it ran every
epoch, or its patience ran out), and a diverged trial's last report carries `DIVERGED_KEY`. A
trial that reached the scheduler's `max_epochs` is complete too (ASHA stops every trial there).
Any other trial that ends without an error was stopped by the scheduler.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import optuna
from optuna.storages import BaseStorage
from ray.tune.search.optuna import OptunaSearch

from hamtune.config import SweepConfig
from hamtune.search.space import define_space, make_sampler, points_to_evaluate
from hamtune.keys import DIVERGED_KEY, FINISHED_KEY, OBJECTIVE, RAY_TRIAL_ATTR, SEARCH_METRIC

logger = logging.getLogger(__name__)

#: Ray's name for the number of reports a trial has made: the step of Optuna's intermediate values.
STEP_KEY = "training_iteration"


def is_pruned(result: dict[str, Any] | None, max_epochs: int) -> bool:
    """Whether a trial that ended without error with this last result was stopped by the scheduler."""
    if not result or result.get(FINISHED_KEY) or result.get(DIVERGED_KEY):
        return False
    return int(result.get("epoch") or 0) < max_epochs


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch that tells trials stopped by the scheduler as PRUNED instead of COMPLETE."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        suggestion = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # what joins the study to the tables (`trial_id`)
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ATTR, trial_id)
        return suggestion

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)  # Ray's warning
            return
        ot_trial = self._ot_trials[trial_id]
        if error:  # Ray tells an errored trial COMPLETE with its last score when it reported one
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            self._completed_trials.add(trial_id)
            return
        # Tune does not pass the result on which the scheduler stopped a trial (an ASHA rung, or
        # its max_t at the last epoch) to `on_trial_result`: report it here, so the study holds
        # every epoch of every trial, pruned or complete.
        if result and STEP_KEY in result and math.isfinite(float(result.get(SEARCH_METRIC, math.nan))):
            step = int(result[STEP_KEY])
            if step not in ot_trial._cached_frozen_trial.intermediate_values:  # report() would warn
                ot_trial.report(float(result[SEARCH_METRIC]), step)
        if not is_pruned(result, self.max_epochs):
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        self._completed_trials.add(trial_id)
        logger.debug("trial %s stopped by the scheduler at epoch %s: told to Optuna as PRUNED",
                     trial_id, result.get("epoch"))


def make_searcher(sweep: SweepConfig, storage: BaseStorage) -> PruningOptunaSearch:
    """The searcher over the sweep's define-by-run space, with the seeded sampler, keeping its
    study (named after the sweep) in `storage`."""
    return PruningOptunaSearch(
        space=partial(define_space, space=sweep.space), metric=SEARCH_METRIC, mode=OBJECTIVE.mode,
        sampler=make_sampler(sweep.search.seed, sweep.search.sampler, sweep.search.trials), points_to_evaluate=points_to_evaluate(sweep) or None,
        max_epochs=sweep.scheduler.max_epochs, storage=storage, study_name=sweep.name,
    )
