"""Which of the final model's optional steps it keeps: each only where it helped out of fold.

What a step buys depends on the run: on the dev set dihedral TTA lost 0.016 test macro F1 and a
top-3 ensemble 0.083 balanced accuracy, on another split TTA lost again while a top-2 ensemble
gained 0.03. So `hamtune evaluate` judges each step on the out-of-fold predictions of train+val
(never on test): TTA and the ensemble by macro F1, calibration by expected calibration error (it
changes no decision by argmax). A step that does not improve its score is dropped with one line
saying so, unless forced (`--force-STEP`); test is still scored for every variant, for the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd




@dataclass(frozen=True)
class StepDecision:
    """One step, kept or dropped, with the out-of-fold scores behind the decision."""

    step: str  # one of STEPS
    what: str  # e.g. "TTA over the 4 flip views"
    score: str  # what was compared: "macro F1" or "ECE"
    with_step: float
    without: float
    helped: bool  # the score improved: lower ECE, higher macro F1
    kept: bool  # helped, or forced
    forced: bool

    def line(self) -> str:
        """What `evaluate` prints: the decision and its numbers."""
        numbers = f"out-of-fold {self.score} {self.with_step:.4f} with it, {self.without:.4f} without"
        if self.kept and not self.helped:
            return f"{self.what}: kept by --force-{self.step} although it did not help ({numbers})"
        return f"{self.what}: {'kept' if self.kept else 'dropped'} ({numbers})"

    def record(self) -> dict[str, Any]:
        """Its entry in evaluation.json."""
        return {**asdict(self), "decision": self.line()}


def judge(step: str, what: str, score: str, with_step: float, without: float, force: bool) -> StepDecision:
    """Keep a step when its out-of-fold score improved (lower is better for ECE), or when forced."""
    helped = with_step < without if score == "ECE" else with_step > without
    return StepDecision(step, what, score, float(with_step), float(without), helped=bool(helped),
                        kept=force or bool(helped), forced=force)


def ensemble_members(summary: pd.DataFrame, chosen: int, folds: int) -> tuple[list[int], list[str]]:
    """The configurations an ensemble takes: those whose mean CV macro F1 is within one standard
    error (std over folds / sqrt(folds)) of the best mean, the deployed configuration always.

    Returns the members (indices, in sweep order) and one line per configuration left out.
    """
    leader = summary.loc[summary["cv_macro_f1_mean"].idxmax()]
    floor = leader["cv_macro_f1_mean"] - leader["cv_macro_f1_std"] / np.sqrt(folds)
    members, left_out = [], []
    for k, row in summary.iterrows():
        if k == chosen or row["cv_macro_f1_mean"] >= floor:
            members.append(int(k))
        else:
            left_out.append(f"trial {row['trial_id']} left out of the ensemble: CV macro F1 "
                            f"{row['cv_macro_f1_mean']:.4f}, below the best's {leader['cv_macro_f1_mean']:.4f} "
                            f"less one standard error ({floor:.4f})")
    return members, left_out
