"""Which hyperparameters mattered: Optuna's importance evaluators on a study rebuilt from a table.

The study is `hamtune.results.offline_study`'s, so any metric of the table can be assessed. The unfreeze
depth is conditional (one `unfreeze_depth_<model>` per model, as in `hamtune.search.space`): across
models only the shared parameters are comparable, so importance is computed once over all
trials for the shared parameters and the model, and once per model including its depth.
Importances are normalised within each scope, never across scopes.

Scores are compared at a common budget: ASHA stops trials early, and a trial stopped after 3
epochs scores lower than the same configuration after 12, so importance over each trial's best
partly measures which trials were stopped. Within a scope each trial is scored by its best
`metric` up to the highest epoch every trial of the scope reached (`at_common_budget`), and the
table says which budget that was.

fANOVA (a random forest's functional ANOVA) is used when a scope has at least
`FANOVA_MIN_TRIALS` trials; below that a forest mostly memorises its few points, so PED-ANOVA
(it compares the parameter densities of the best trials with those of all trials and fits no
model) is used instead, with a note that the numbers are indicative only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from hamtune.keys import FLOAT_HYPERPARAMETERS
from hamtune.results.curves import best_so_far
from hamtune.results.offline_study import distributions, quiet_optuna, rebuilt_study

if TYPE_CHECKING:
    from optuna.importance import BaseImportanceEvaluator

FANOVA_MIN_TRIALS = 10
#: Below this, differences between trials cannot be told from noise at all: no importance.
MIN_TRIALS = 3
ALL_MODELS = "all models"
COLUMNS = ["scope", "parameter", "importance", "evaluator", "trials", "budget"]


class Importance(NamedTuple):
    """Importance per scope (`ALL_MODELS` or a model name), the evaluator used, and caveats."""

    table: pd.DataFrame  # COLUMNS; importances sum to 1 within a scope
    notes: tuple[str, ...]


def _searched_depth(model: str, scored: pd.DataFrame, spaces: Sequence[dict[str, Any]]) -> list[str]:
    """The model's depth parameter if the search varied it: a model trained from scratch has no
    depth range (every block trains), so its constant depth explains nothing."""
    from hamtune.search.space import unfreeze_parameter

    if spaces:
        searched = any(model in s.get("unfreeze_depth", {}) for s in spaces)
    else:
        searched = scored.loc[scored["model"] == model, "unfreeze_depth"].nunique() > 1
    return [unfreeze_parameter(model)] if searched else []


def evaluator_for(trials: int) -> tuple[BaseImportanceEvaluator, str]:
    """fANOVA from `FANOVA_MIN_TRIALS` trials on, PED-ANOVA below; with the evaluator's name."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if trials >= FANOVA_MIN_TRIALS:
        return FanovaImportanceEvaluator(seed=0), "fANOVA"
    return PedAnovaImportanceEvaluator(), "PED-ANOVA"


def _evaluate(trials: pd.DataFrame, params: list[str], dists: dict[str, Any], metric: str,
              maximize: bool) -> tuple[dict[str, float], str]:
    from optuna.importance import get_param_importances

    study = rebuilt_study(trials, metric, dists, maximize)
    evaluator, name = evaluator_for(len(trials))
    with quiet_optuna():
        return get_param_importances(study, evaluator=evaluator, params=params), name


def at_common_budget(trials: pd.DataFrame, epochs: pd.DataFrame | None, metric: str,
                     maximize: bool = True) -> tuple[pd.DataFrame, int | None]:
    """`trials` with `metric` replaced by each one's best up to the highest epoch all of them
    reached, and that epoch; unchanged (and None) without per-epoch rows for every trial."""
    if epochs is None or not len(trials):
        return trials, None
    keys = [k for k in ("sweep", "trial_id") if k in trials and k in epochs]
    rows = best_so_far(epochs.merge(trials[keys], on=keys), metric, keys, maximize)
    reached = rows.groupby(keys)["epoch"].max()
    if len(reached) < len(trials):
        return trials, None
    budget = int(reached.min())
    best = rows[rows["epoch"] <= budget].groupby(keys)[metric].last().rename("_at_budget").reset_index()
    merged = trials.merge(best, on=keys, how="left")
    merged.index = trials.index
    return merged.assign(**{metric: merged["_at_budget"]}).drop(columns="_at_budget"), budget


def parameter_importance(scored: pd.DataFrame, metric: str, spaces: Sequence[dict[str, Any]],
                         maximize: bool = True, epochs: pd.DataFrame | None = None) -> Importance:
    """Importance of each hyperparameter for `metric` over the `scored` trials (one row each),
    each scope at its common budget (`at_common_budget`) when `epochs` holds their per-epoch rows."""
    from hamtune.search.space import params_from_row

    notes: list[str] = []
    if not spaces:
        notes.append("importance: the tables declare no search space; parameter ranges are the observed ones")
    dists = distributions(scored, spaces)
    models = list(dict.fromkeys(scored["model"].dropna()))
    scopes = [(ALL_MODELS, scored, ["model", *FLOAT_HYPERPARAMETERS])] if len(models) > 1 else []
    scopes += [(m, scored[scored["model"] == m], [*FLOAT_HYPERPARAMETERS, *_searched_depth(m, scored, spaces)])
               for m in models]
    rows = []
    for scope, trials, params in scopes:
        trials, budget = at_common_budget(trials, epochs, metric, maximize)
        if budget is None and epochs is not None:
            notes.append(f"importance ({scope}): not every trial has per-epoch rows; scored by each trial's "
                         "best, whatever its number of epochs")
        elif budget is not None:
            notes.append(f"importance ({scope}): each trial scored by its best {metric} up to epoch {budget}, "
                         "the most every trial of the scope ran")
        values = pd.to_numeric(trials[metric], errors="coerce")
        if len(trials) < MIN_TRIALS:
            notes.append(f"importance ({scope}): {len(trials)} scored trial(s), at least {MIN_TRIALS} needed")
            continue
        if values.nunique() == 1:
            notes.append(f"importance ({scope}): every trial has {metric} = {values.iloc[0]:.4g}, "
                         "so no parameter explains a difference")
            continue
        usable = [p for p in params if p in dists and all(p in params_from_row(r) for _, r in trials.iterrows())]
        if skipped := sorted(set(params) - set(usable)):
            notes.append(f"importance ({scope}): {', '.join(skipped)} not assessed (missing values)")
        importances, evaluator = _evaluate(trials, usable, dists, metric, maximize)
        if evaluator != "fANOVA":
            notes.append(f"importance ({scope}): {len(trials)} trials are too few for fANOVA "
                         f"(needs {FANOVA_MIN_TRIALS}); used {evaluator} instead, indicative only")
        rows += [{"scope": scope, "parameter": "unfreeze_depth" if p.startswith("unfreeze_depth_") else p,
                  "importance": float(v), "evaluator": evaluator, "trials": len(trials), "budget": budget}
                 for p, v in importances.items()]
    return Importance(pd.DataFrame(rows, columns=COLUMNS), tuple(notes))
