"""An Optuna study rebuilt in memory from a trials table, for Optuna's importance evaluators and plots.

Each scored trial becomes an `optuna.trial.create_trial` with the distributions the sweep
declared (its resolved config), so Optuna sees the real search space. The unfreeze depth is
conditional, as in `hamtune.search.space`: one `unfreeze_depth_<model>` parameter per model. Used when
Optuna needs a study the tables hold but no storage does: importance for any metric, and the
report's plots of an experiment that kept no study.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from hamtune.keys import FLOAT_HYPERPARAMETERS

if TYPE_CHECKING:
    import optuna


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

    from hamtune.search.space import unfreeze_parameter

    models = sorted({m for s in spaces for m in s.get("models", ())} | set(trials["model"].dropna()))
    result: dict[str, Any] = {"model": CategoricalDistribution(models)}
    for name in FLOAT_HYPERPARAMETERS:
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
        result[unfreeze_parameter(model)] = IntDistribution(int(low), int(high))
    return result


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's "study created" log lines and its small-sample warnings (hamtune writes notes)."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def rebuilt_study(scored: pd.DataFrame, metric: str, dists: dict[str, Any], maximize: bool,
                  name: str | None = None) -> optuna.Study:
    """An in-memory study holding each of the `scored` trials (one row each, in the order given) as
    a COMPLETE trial whose value is its `metric`."""
    import optuna

    from hamtune.search.space import params_from_row

    with quiet_optuna():
        study = optuna.create_study(study_name=name, direction="maximize" if maximize else "minimize")
        study.add_trials([
            optuna.trial.create_trial(params=(values := params_from_row(row)),
                                      distributions={key: dists[key] for key in values},
                                      value=float(row[metric]))
            for _, row in scored.iterrows()
        ])
    return study
