"""The search space: the sweep file's ranges turned into Optuna's define-by-run function.

The model is chosen first and each transfer-mode model's unfreeze depth is its own conditional
parameter (`unfreeze_depth_<model>`), because the backbones have different block counts and a
depth means something different for each. A model trained from scratch has no depth to search:
every block trains. Ray's OptunaSearch merges the dict `define_space` returns into the trial
config, so every trial also carries one model-independent `unfreeze_depth` key (for a model
trained from scratch, all of its blocks).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from hamtune.config import FloatRange, SpaceConfig, SweepConfig
from hamtune.keys import FLOAT_HYPERPARAMETERS
from hamtune.backbones import max_unfreeze_depth


def unfreeze_parameter(model: str) -> str:
    """Optuna's name for `model`'s unfreeze depth (absent from trials of other models)."""
    return f"unfreeze_depth_{model}"


def params_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A trials-table row's parameters in Optuna's names (the depth under its model's name).

    Missing values are left out, so a row that does not fit a space lacks one of its keys.
    """
    model = row["model"]
    params = {name: float(row[name]) for name in FLOAT_HYPERPARAMETERS if pd.notna(row[name])}
    if pd.notna(row["unfreeze_depth"]):
        params[unfreeze_parameter(model)] = int(row["unfreeze_depth"])
    return {"model": model, **params}


def define_space(trial: optuna.Trial, space: SpaceConfig) -> dict[str, Any]:
    """Suggest one trial's parameters; returns the extra keys Ray adds to the trial config.

    Module-level on purpose: pass `functools.partial(define_space, space=...)`, which pickles
    with Ray's experiment checkpoint where a closure would not.
    """
    model = trial.suggest_categorical("model", list(space.models))
    depth = space.unfreeze_depth.get(model)
    if depth is None:  # from scratch
        unfreeze_depth = max_unfreeze_depth(model)
    else:
        unfreeze_depth = trial.suggest_int(unfreeze_parameter(model), depth.low, depth.high)
    for name in FLOAT_HYPERPARAMETERS:
        bounds: FloatRange = getattr(space, name)
        trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)
    return {"unfreeze_depth": unfreeze_depth}


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the space: Optuna's 10, but at most a third of the sweep.

    With Optuna's fixed 10, a sweep of 12 trials would be random search with two guided trials;
    a third of the budget still spreads TPE's first observations over the space.
    """
    return max(2, min(10, trials // 3))


def make_sampler(seed: int, kind: str = "tpe", trials: int = 30) -> optuna.samplers.BaseSampler:
    """A seeded TPE sampler that models the conditional space per model (or, for `kind`
    "random", Optuna's uniform random sampler: the baseline a search must beat).

    `trials` is the sweep's budget, which sets TPE's random start-up (`startup_trials`).

    `group=True` decomposes the space into the parameter sets trials actually share (one per
    model), so each model's depth is modelled jointly with the learning rate instead of
    independently. Optuna marks the option experimental; the warning says only that.
    OptunaSearch ignores its own `seed=` once a sampler is given, hence the seed here.
    """
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=startup_trials(trials))


def points_to_evaluate(config: SweepConfig) -> list[dict[str, Any]]:
    """The sweep's `search.points_to_evaluate` in Optuna's parameter names, for enqueuing."""
    return [
        {
            "model": point.model,
            **({} if point.unfreeze_depth is None else {unfreeze_parameter(point.model): point.unfreeze_depth}),
            **{name: getattr(point, name) for name in FLOAT_HYPERPARAMETERS},
        }
        for point in config.search.points_to_evaluate
    ]


def describe_space(space: SpaceConfig) -> list[str]:
    """One line per parameter (one per model for the depth), for `--dry-run`."""
    rows = [("model", f"categorical [{', '.join(space.models)}]")]
    for model in space.models:
        r = space.unfreeze_depth.get(model)
        text = (f"{model}: not searched (from scratch: all {max_unfreeze_depth(model)} blocks train)" if r is None
                else f"{model}: int [{r.low}, {r.high}]")
        rows.append(("unfreeze_depth", text))
    for name in FLOAT_HYPERPARAMETERS:
        bounds: FloatRange = getattr(space, name)
        rows.append((name, f"{'log-uniform' if bounds.log else 'uniform'} [{bounds.low:g}, {bounds.high:g}]"))
    width = max(len(name) for name, _ in rows) + 2
    return [f"{name:<{width}}{text}" for name, text in rows]
