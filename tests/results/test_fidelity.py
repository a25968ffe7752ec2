"""Rung fidelity, on hand-worked tables."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hamtune.results.fidelity import asha_rungs, fidelity_table, rung_fidelity, spearman


@pytest.mark.parametrize(("grace", "factor", "max_epochs", "rungs"), [
    (1, 2.0, 12, [1, 2, 4, 8]), (3, 2.0, 5, [3]), (2, 3.0, 20, [2, 6, 18]),
])
def test_rungs_are_rays_asha_milestones(grace: int, factor: float, max_epochs: int, rungs: list[int]) -> None:
    assert asha_rungs(grace, factor, max_epochs) == rungs


def _epochs(scores: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": trial, "epoch": epoch, "val_macro_f1": score}
                         for trial, values in scores.items() for epoch, score in enumerate(values, 1)])


#: Four trials ran 4 epochs; E was stopped after 2 and is not compared.
SCORES = {"A": [0.1, 0.4, 0.3, 0.5], "B": [0.2, 0.2, 0.6, 0.6], "C": [0.3, 0.1, 0.2, 0.2],
          "D": [0.4, 0.3, 0.35, 0.45], "E": [0.9, 0.1]}


def test_each_rung_correlates_the_best_so_far_with_the_final_best_of_the_trials_that_ended() -> None:
    table = rung_fidelity(_epochs(SCORES), "val_macro_f1", [1, 2, 4])
    # Rung 1: ranks (1, 2, 3, 4) against final bests 0.5, 0.6, 0.3, 0.45, ranks (3, 4, 1, 2):
    # rho = 1 - 6 * 16 / (4 * 15) = -0.6. Rung 2: best so far 0.4, 0.2, 0.3, 0.4, ranks
    # (3.5, 1, 2, 3.5): rho = -1.5 / sqrt(4.5 * 5) = -0.316. Rung 4 is the end itself: left out.
    assert table["rung"].tolist() == [1, 2]
    assert table["trials"].tolist() == [4, 4]
    assert table["spearman"].tolist() == pytest.approx([-0.6, -1.5 / math.sqrt(22.5)])


def test_a_rung_that_ranks_as_the_end_does_scores_one_and_too_few_trials_score_nan() -> None:
    faithful = {"A": [0.1, 0.2, 0.3], "B": [0.2, 0.3, 0.4], "C": [0.3, 0.4, 0.5]}
    assert rung_fidelity(_epochs(faithful), "val_macro_f1", [1, 2])["spearman"].tolist() == pytest.approx([1.0, 1.0])
    assert math.isnan(spearman([0.1, 0.2], [0.3, 0.4]))
    assert math.isnan(spearman([0.1, 0.1, 0.1], [0.3, 0.4, 0.5]))


def test_a_sweep_without_a_scheduler_is_read_at_the_rungs_asha_would_have_used() -> None:
    epochs = _epochs({"A": [0.1] * 5, "B": [0.2] * 5, "C": [0.3, 0.3, 0.3, 0.3, 0.1]}).assign(sweep="s")
    asha = {"s": {"config": json.dumps({"scheduler": {"type": "asha", "grace_period": 3, "reduction_factor": 2,
                                                        "max_epochs": 5}})}}
    table, notes = fidelity_table(epochs, asha, "val_macro_f1")
    assert table[["scheduler", "rung", "trials"]].values.tolist() == [["asha", 3, 3]]
    assert table["spearman"].tolist() == pytest.approx([1.0]) and notes == []
    none = {"s": {"config": json.dumps({"scheduler": {"type": "none"}})}}
    assert fidelity_table(epochs, none, "val_macro_f1")[0]["rung"].tolist() == [1, 2, 4]
    few, notes = fidelity_table(epochs[epochs["trial_id"] != "C"], none, "val_macro_f1")
    assert notes == ["s: rung fidelity needs 3 trials that ran to the end; 2 did"]
