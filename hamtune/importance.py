"""Which hyperparameters mattered: Optuna's importance evaluators on a study rebuilt from a table.

Each scored trial becomes an `optuna.trial.create_trial` with the distributions the sweep
declared (its resolved config), so the evaluators see the real search space. The unfreeze
depth is conditional (one `unfreeze_depth_<model>` per model, as in `hamtune.space`): across
models only the shared parameters are comparable, so importance is computed once over all
trials for the shared parameters and the model, and once per model including its depth.
Importances are normalised within each scope, never across scopes.

fANOVA (a random forest's functional ANOVA) is used when a scope has at least
`FANOVA_MIN_TRIALS` trials; below that a forest mostly memorises its few points, so PED-ANOVA
(it compares the parameter densities of the best trials with those of all trials and fits no
model) is used instead, with a note that the numbers are indicative only.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import pandas as pd

from hamtune.config import FLOAT_PARAMETERS

FANOVA_MIN_TRIALS = 10
#: Below this, differences between trials cannot be told from noise at all: no importance.
MIN_TRIALS = 3
ALL_MODELS = "all models"
COLUMNS = ["scope", "parameter", "importance", "evaluator", "trials"]


class Importance(NamedTuple):
    """Importance per scope (`ALL_MODELS` or a model name), the evaluator used, and caveats."""

    table: pd.DataFrame  # COLUMNS; importances sum to 1 within a scope
    notes: tuple[str, ...]


def _depth(model: str) -> str:
    from hamtune.space import unfreeze_parameter

    return unfreeze_parameter(model)


def _bounds(values: pd.Series, declared: Sequence[dict[str, Any]]) -> tuple[Any, Any]:
    """The declared ranges widened to every observed value (merged sweeps may differ)."""
    lows = [d["low"] for d in declared] + [values.min()]
    highs = [d["high"] for d in declared] + [values.max()]
    return min(lows), max(highs)


def distributions(trials: pd.DataFrame, spaces: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Optuna distributions of every parameter, from the declared `spaces` and the trials' values.

    `spaces` are sweeps' `space` sections (see `hamtune.config.to_dict`); without any, the
    observed ranges are used (on a linear scale).
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    models = sorted({m for s in spaces for m in s.get("models", ())} | set(trials["model"].dropna()))
    result: dict[str, Any] = {"model": CategoricalDistribution(models)}
    for name in FLOAT_PARAMETERS:
        values = pd.to_numeric(trials[name], errors="coerce").dropna()
        if values.empty:
            continue
        declared = [s[name] for s in spaces if name in s]
        low, high = _bounds(values, declared)
        result[name] = FloatDistribution(float(low), float(high), log=any(d.get("log") for d in declared))
    for model in models:
        values = pd.to_numeric(trials.loc[trials["model"] == model, "unfreeze_depth"], errors="coerce").dropna()
        if values.empty:
            continue
        declared = [s["unfreeze_depth"][model] for s in spaces if model in s.get("unfreeze_depth", {})]
        low, high = _bounds(values, declared)
        result[_depth(model)] = IntDistribution(int(low), int(high))
    return result


def _searched_depth(model: str, scored: pd.DataFrame, spaces: Sequence[dict[str, Any]]) -> list[str]:
    """The model's depth parameter if the search varied it: a model trained from scratch has no
    depth range (every block trains), so its constant depth explains nothing."""
    if spaces:
        searched = any(model in s.get("unfreeze_depth", {}) for s in spaces)
    else:
        searched = scored.loc[scored["model"] == model, "unfreeze_depth"].nunique() > 1
    return [_depth(model)] if searched else []


def _params(row: pd.Series) -> dict[str, Any]:
    """One trial's parameters in Optuna's names (the depth under its model's name)."""
    params = {name: float(row[name]) for name in FLOAT_PARAMETERS if pd.notna(row[name])}
    if pd.notna(row["unfreeze_depth"]):
        params[_depth(row["model"])] = int(row["unfreeze_depth"])
    return {"model": row["model"], **params}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's "study created" log lines and its small-sample warnings (we write notes)."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def _evaluate(trials: pd.DataFrame, params: list[str], dists: dict[str, Any], metric: str,
              maximize: bool) -> tuple[dict[str, float], str]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    with _quiet_optuna():
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        for _, row in trials.iterrows():
            values = _params(row)
            study.add_trial(optuna.trial.create_trial(
                params=values, distributions={name: dists[name] for name in values},
                value=float(row[metric]),
            ))
        if len(trials) >= FANOVA_MIN_TRIALS:
            evaluator, name = FanovaImportanceEvaluator(seed=0), "fANOVA"
        else:
            evaluator, name = PedAnovaImportanceEvaluator(), "PED-ANOVA"
        return get_param_importances(study, evaluator=evaluator, params=params), name


def parameter_importance(scored: pd.DataFrame, metric: str, spaces: Sequence[dict[str, Any]],
                         maximize: bool = True) -> Importance:
    """Importance of each hyperparameter for `metric` over the `scored` trials (one row each)."""
    notes: list[str] = []
    if not spaces:
        notes.append("importance: the tables declare no search space; parameter ranges are the observed ones")
    dists = distributions(scored, spaces)
    models = list(dict.fromkeys(scored["model"].dropna()))
    scopes = [(ALL_MODELS, scored, ["model", *FLOAT_PARAMETERS])] if len(models) > 1 else []
    scopes += [(m, scored[scored["model"] == m], [*FLOAT_PARAMETERS, *_searched_depth(m, scored, spaces)])
               for m in models]
    rows = []
    for scope, trials, params in scopes:
        values = pd.to_numeric(trials[metric], errors="coerce")
        if len(trials) < MIN_TRIALS:
            notes.append(f"importance ({scope}): {len(trials)} scored trial(s), at least {MIN_TRIALS} needed")
            continue
        if values.nunique() == 1:
            notes.append(f"importance ({scope}): every trial has {metric} = {values.iloc[0]:.4g}, "
                         "so no parameter explains a difference")
            continue
        usable = [p for p in params if p in dists and all(p in _params(r) for _, r in trials.iterrows())]
        if skipped := sorted(set(params) - set(usable)):
            notes.append(f"importance ({scope}): {', '.join(skipped)} not assessed (missing values)")
        importances, evaluator = _evaluate(trials, usable, dists, metric, maximize)
        if evaluator != "fANOVA":
            notes.append(f"importance ({scope}): {len(trials)} trials are too few for fANOVA "
                         f"(needs {FANOVA_MIN_TRIALS}); used {evaluator} instead, indicative only")
        rows += [{"scope": scope, "parameter": "unfreeze_depth" if p.startswith("unfreeze_depth_") else p,
                  "importance": float(v), "evaluator": evaluator, "trials": len(trials)}
                 for p, v in importances.items()]
    return Importance(pd.DataFrame(rows, columns=COLUMNS), tuple(notes))
