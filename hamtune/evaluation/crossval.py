"""Grouped cross-validation of the sweep's top configurations.

A sweep's ranking rests on one validation split of a few hundred lesions; the top
configurations are often within its noise. Retraining each on the same F lesion-grouped folds
of train+val (each for its trial's best-epoch count) scores every one on every train+val image
once, out of fold, and chooses by the mean over folds. The out-of-fold predictions are also
what calibration and the melanoma threshold are fitted on, so test stays untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from hamtune.evaluation.fitting import Fit, FitJob
from hamtune.evaluation.selection import trial_params
from hamtune.keys import OBJECTIVE
from hamtune.metrics import HEADLINE_SCORES

if TYPE_CHECKING:
    from hamtune.config import SweepConfig


class Candidate(NamedTuple):
    """One of the top configurations, trained as its trial was."""

    trial_id: str
    params: dict[str, Any]
    epochs: int
    seed: int
    sweep_rank: int
    val_macro_f1: float


class CrossValidation(NamedTuple):
    folds: pd.DataFrame  # one row per (configuration, fold)
    summary: pd.DataFrame  # one row per configuration, in sweep order, with its CV rank
    oof: list[np.ndarray]  # per configuration: (train+val images, classes) out-of-fold probabilities
    oof_plain: list[np.ndarray]  # the same without TTA (equal to `oof` when TTA is off)
    chosen: int  # index of the configuration with the best mean CV macro F1


def candidates(top: pd.DataFrame, sweep: SweepConfig, epochs: int | None = None) -> list[Candidate]:
    """The top trials as configurations to retrain: parameters, epoch count and seed as the trial had."""
    from hamtune.training.trial import trial_seed

    result = []
    for _, trial in top.iterrows():
        params = trial_params(trial)
        result.append(Candidate(str(trial["trial_id"]), params, int(trial["best_epoch"]) if epochs is None else epochs,
                                trial_seed(sweep.search.seed, params, sweep.training), int(trial["rank"]), float(trial[OBJECTIVE.name])))
    return result


def fold_jobs(configs: Sequence[Candidate], dev: np.ndarray, held_out: Sequence[np.ndarray],
              tta: bool) -> list[FitJob]:
    """One training run per (configuration, fold): fit on the other folds, predict the held-out one."""
    jobs = []
    for k, config in enumerate(configs, 1):
        for f, rows in enumerate(held_out, 1):
            fit = np.delete(dev, rows)
            jobs.append(FitJob(f"config {k} (trial {config.trial_id}) fold {f}/{len(held_out)}", config.params,
                               config.epochs, config.seed, fit, dev[rows], tta=tta))
    return jobs


def _scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    y_pred = proba.argmax(axis=1)
    return {name: score(y_true, y_pred) for name, score in HEADLINE_SCORES.items()}


def collect(configs: Sequence[Candidate], held_out: Sequence[np.ndarray], fits: Sequence[Fit],
            y_dev: np.ndarray) -> CrossValidation:
    """Out-of-fold predictions, per-fold scores and the choice, from `fold_jobs`' fits (same order)."""
    classes = fits[0].proba.shape[1]
    oof, oof_plain, rows = [], [], []
    fit_iter = iter(fits)
    for k, config in enumerate(configs):
        tta_all, plain_all = np.zeros((len(y_dev), classes)), np.zeros((len(y_dev), classes))
        for f, held in enumerate(held_out):
            fit = next(fit_iter)
            plain_all[held] = fit.proba
            tta_all[held] = fit.proba if fit.tta_proba is None else fit.tta_proba
            rows.append({"config": k + 1, "trial_id": config.trial_id, "fold": f + 1, "images": len(held),
                         "train_seconds": fit.seconds, **_scores(y_dev[held], tta_all[held]),
                         **{f"{name} (no TTA)": value for name, value in _scores(y_dev[held], fit.proba).items()}})
        oof.append(tta_all)
        oof_plain.append(plain_all)
    folds = pd.DataFrame(rows)
    stats = folds.groupby("config")[list(HEADLINE_SCORES)].agg(["mean", "std"])
    summary = pd.DataFrame({
        "config": [k + 1 for k in range(len(configs))],
        "trial_id": [c.trial_id for c in configs], "model": [c.params["model"] for c in configs],
        "sweep_rank": [c.sweep_rank for c in configs], OBJECTIVE.name: [c.val_macro_f1 for c in configs],
        "epochs": [c.epochs for c in configs],
        **{f"cv_{name}_{stat}": stats[(name, stat)].to_numpy() for name in HEADLINE_SCORES for stat in ("mean", "std")},
        "cv_macro_f1_min": folds.groupby("config")["macro_f1"].min().to_numpy(),
        "cv_macro_f1_max": folds.groupby("config")["macro_f1"].max().to_numpy(),
    })
    # Best mean CV macro F1 first; a tie goes to the better sweep rank.
    order = summary.sort_values(["cv_macro_f1_mean", "sweep_rank"], ascending=[False, True], kind="stable")
    summary["cv_rank"] = pd.Series(range(1, len(order) + 1), index=order.index)
    return CrossValidation(folds, summary, oof, oof_plain, int(order.index[0]))


def ranking_note(cv: CrossValidation) -> str:
    """One sentence: does cross-validation agree with the sweep's single validation split?"""
    summary = cv.summary
    chosen = summary.iloc[cv.chosen]
    if len(summary) == 1:
        return f"one configuration cross-validated (trial {chosen['trial_id']}): nothing to rank"
    if (summary["cv_rank"] == summary["sweep_rank"].rank(method="first").astype(int)).all():
        return (f"cross-validation ranks the {len(summary)} configurations as the sweep did; "
                f"trial {chosen['trial_id']} stays first")
    return (f"cross-validation ranks the configurations differently from the sweep's validation split: "
            f"it chooses trial {chosen['trial_id']} (sweep rank {chosen['sweep_rank']}, CV macro F1 "
            f"{chosen['cv_macro_f1_mean']:.4f} ± {chosen['cv_macro_f1_std']:.4f}) over the sweep's best, "
            f"trial {summary.iloc[0]['trial_id']} (CV macro F1 {summary.iloc[0]['cv_macro_f1_mean']:.4f})")
