"""Which experiment, which trials: the sweep's ranking as the refit, export and evaluation read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hamtune.results.analysis import rank_trials
from hamtune.errors import ConfigError, ExperimentError
from hamtune.store.experiment import ExperimentDir, experiment_at
from hamtune.keys import HYPERPARAMETERS, OBJECTIVE



def resolve_experiment(location: str) -> ExperimentDir:
    """The hamtune experiment at `location` (a directory or URI); refuses anything else."""
    experiment = experiment_at(location)
    if not experiment.is_hamtune():
        raise ExperimentError(f"{location} is not a hamtune experiment (no hamtune.json in it)")
    return experiment


def choose_trial(trials: pd.DataFrame, rank: int | None = None, trial_id: str | None = None) -> pd.Series:
    """The trial to refit: `trial_id` (or its directory name) if given, else the one at `rank` (default 1)."""
    ranked, _ = rank_trials(trials, OBJECTIVE.name)
    if trial_id is not None:
        trial_id = trial_id.removeprefix("trial_")
        match = ranked[ranked["trial_id"] == trial_id]
        if match.empty:
            known = ", ".join(ranked["trial_id"].astype(str).head(10))
            raise ExperimentError(f"--trial {trial_id!r} is not in this experiment (trials: {known})")
        if pd.isna(match.iloc[0]["rank"]):
            raise ExperimentError(f"--trial {trial_id!r} has no {OBJECTIVE.name} (status "
                                  f"{match.iloc[0]['status']}): nothing says how long to train it")
        return match.iloc[0]
    count = int(ranked["rank"].count())
    rank = 1 if rank is None else rank
    if not 1 <= rank <= count:
        raise ConfigError(f"--rank must be in [1, {count}] (ranked trials in this experiment), got {rank}")
    return ranked.iloc[rank - 1]


def check_top(top: int) -> None:
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"--top must be an integer >= 1, got {top!r}")


def top_trials(trials: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` best-ranked trials that have a best epoch, best first; refuses when there are fewer."""
    check_top(top)
    ranked, _ = rank_trials(trials, OBJECTIVE.name)
    usable = ranked[ranked["rank"].notna() & ranked["best_epoch"].notna()]
    if len(usable) < top:
        raise ExperimentError(f"--top {top} needs {top} finished trials with a {OBJECTIVE.name}, but this "
                              f"experiment has {len(usable)}: use --top {len(usable)} or fewer" if len(usable)
                              else f"this experiment has no finished trial with a {OBJECTIVE.name}")
    return usable.head(top).reset_index(drop=True)


def trial_params(trial: pd.Series) -> dict[str, Any]:
    """A trial row's hyperparameters as plain Python values (`HYPERPARAMETERS`), as the trial
    trained: a from-scratch row shows no unfreeze depth, and its trial trained every block."""
    from hamtune.backbones import max_unfreeze_depth

    params = {key: trial[key].item() if hasattr(trial[key], "item") else trial[key] for key in HYPERPARAMETERS}
    if pd.isna(params["unfreeze_depth"]):
        params["unfreeze_depth"] = max_unfreeze_depth(params["model"])
    return params


def new_or_empty_dir(out: str) -> Path:
    """`--out` resolved; refused when it exists as anything but an empty directory, so nothing is overwritten."""
    path = Path(out).expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExperimentError(f"{path} already exists and is not an empty directory: choose another --out or remove it")
    return path
