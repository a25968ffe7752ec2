"""Hyperparameter importance on synthetic tables where we know which parameter drives the metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hamtune.results.importance import ALL_MODELS, FANOVA_MIN_TRIALS, parameter_importance
from hamtune.results.offline_study import distributions
from tests.support.handmade import SPACE, trial_row


def synthetic_trials(n: int, seed: int = 0, driver: str = "learning_rate") -> pd.DataFrame:
    """`n` trials of two models with random parameters; macro F1 depends on `driver` only (+ small noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        model = ("densenet121", "convnext_small")[i % 2]
        params = {"learning_rate": float(10 ** rng.uniform(-5, -2)), "dropout": float(rng.uniform(0, 0.5)),
                  "class_weight_power": float(rng.uniform(0, 1)), "unfreeze_depth": int(rng.integers(0, 10))}
        signal = {"learning_rate": -abs(np.log10(params["learning_rate"]) + 3.5) / 1.5,
                  "unfreeze_depth": params["unfreeze_depth"] / 9}[driver]
        rows.append(trial_row(f"t{i}", model, score=0.5 + 0.3 * signal + rng.normal(0, 0.01), **params))
    return pd.DataFrame(rows)


def importances(result, scope: str) -> dict[str, float]:  # noqa: ANN001 - Importance
    rows = result.table[result.table["scope"] == scope]
    return dict(zip(rows["parameter"], rows["importance"]))


def test_the_parameter_that_drives_the_metric_ranks_first() -> None:
    result = parameter_importance(synthetic_trials(40), "val_macro_f1", [SPACE])
    shared = importances(result, ALL_MODELS)
    assert set(shared) == {"model", "learning_rate", "dropout", "class_weight_power"}
    assert shared["learning_rate"] > 0.5
    assert shared["learning_rate"] > shared["dropout"] and shared["learning_rate"] > shared["class_weight_power"]
    assert sum(shared.values()) == pytest.approx(1.0)
    assert set(result.table["evaluator"]) == {"fANOVA"}
    assert not result.notes


def test_conditional_depth_is_assessed_within_each_model() -> None:
    result = parameter_importance(synthetic_trials(60, driver="unfreeze_depth"), "val_macro_f1", [SPACE])
    assert "unfreeze_depth" not in importances(result, ALL_MODELS)  # a depth means something else per model
    for model in ("densenet121", "convnext_small"):
        per_model = importances(result, model)
        assert max(per_model, key=per_model.get) == "unfreeze_depth", (model, per_model)
    assert result.table.groupby("scope")["trials"].first().to_dict() == {
        ALL_MODELS: 60, "densenet121": 30, "convnext_small": 30}


def test_loss_is_minimised() -> None:
    trials = synthetic_trials(40)
    trials["val_loss"] = 2.0 - trials["val_macro_f1"]
    result = parameter_importance(trials, "val_loss", [SPACE], maximize=False)
    shared = importances(result, ALL_MODELS)
    assert max(shared, key=shared.get) == "learning_rate"


def test_few_trials_fall_back_to_ped_anova_with_a_note() -> None:
    result = parameter_importance(synthetic_trials(6), "val_macro_f1", [SPACE])
    assert set(result.table["evaluator"]) == {"PED-ANOVA"}
    assert any(f"too few for fANOVA (needs {FANOVA_MIN_TRIALS}); used PED-ANOVA" in note for note in result.notes)
    # Per model only 3 trials each: still assessed, also with the fallback.
    assert set(result.table["scope"]) == {ALL_MODELS, "densenet121", "convnext_small"}


def test_too_few_or_identical_trials_give_notes_not_numbers() -> None:
    two = parameter_importance(synthetic_trials(2), "val_macro_f1", [SPACE])
    assert two.table.empty
    assert any("2 scored trial(s), at least 3 needed" in note for note in two.notes)
    same = synthetic_trials(12).assign(val_macro_f1=0.25)
    flat = parameter_importance(same, "val_macro_f1", [SPACE])
    assert flat.table.empty
    assert any("every trial has val_macro_f1 = 0.25" in note for note in flat.notes)


def test_missing_parameter_values_are_skipped_with_a_note() -> None:
    trials = synthetic_trials(12).assign(unfreeze_depth=pd.NA)
    result = parameter_importance(trials, "val_macro_f1", [SPACE])
    assert "unfreeze_depth" not in set(result.table["parameter"])
    assert any("unfreeze_depth_densenet121 not assessed (missing values)" in note for note in result.notes)


def test_distributions_follow_the_declared_space_widened_to_observed_values() -> None:
    trials = pd.DataFrame([trial_row("a", "densenet121", learning_rate=0.05, unfreeze_depth=20),
                           trial_row("b", "resnet", learning_rate=1e-3)])
    dists = distributions(trials, [SPACE])
    assert dists["model"] == CategoricalDistribution(["convnext_small", "densenet121", "resnet"])
    assert dists["learning_rate"] == FloatDistribution(1e-5, 0.05, log=True)  # widened: 0.05 was observed
    assert dists["dropout"] == FloatDistribution(0.0, 0.5)
    assert dists["unfreeze_depth_densenet121"] == IntDistribution(0, 20)
    assert dists["unfreeze_depth_resnet"] == IntDistribution(1, 1)  # undeclared: observed only
    assert "unfreeze_depth_convnext_small" not in dists  # no trial of it


def test_without_a_declared_space_the_observed_ranges_are_used() -> None:
    result = parameter_importance(synthetic_trials(12), "val_macro_f1", [])
    assert len(result.table)
    assert any("declare no search space" in note for note in result.notes)
    dists = distributions(synthetic_trials(12), [])
    assert not dists["learning_rate"].log


def test_a_from_scratch_model_is_assessed_without_its_constant_depth() -> None:
    """From scratch every block trains (depth = all 58 blocks, never searched): only what was searched is ranked."""
    trials = synthetic_trials(40).assign(model="densenet121", unfreeze_depth=58)
    scratch_space = {**SPACE, "models": ["densenet121"], "unfreeze_depth": {}}
    result = parameter_importance(trials, "val_macro_f1", [scratch_space])
    assert set(importances(result, "densenet121")) == {"learning_rate", "dropout", "class_weight_power"}
    assert importances(result, "densenet121")["learning_rate"] > 0.5


def test_trials_are_compared_at_the_most_epochs_they_all_ran() -> None:
    """A ran 4 epochs, B was stopped after 2, C after 3: all are scored by their best up to epoch 2."""
    from hamtune.results.importance import at_common_budget

    scores = {"A": [0.1, 0.5, 0.3, 0.6], "B": [0.2, 0.3], "C": [0.4, 0.1, 0.2]}
    epochs = pd.DataFrame([{"sweep": "s", "trial_id": t, "epoch": e, "val_macro_f1": v}
                           for t, values in scores.items() for e, v in enumerate(values, 1)])
    trials = pd.DataFrame({"sweep": "s", "trial_id": ["A", "B", "C"], "val_macro_f1": [0.6, 0.3, 0.4]}, index=[7, 8, 9])
    at, budget = at_common_budget(trials, epochs, "val_macro_f1")
    assert budget == 2 and at.index.tolist() == [7, 8, 9]
    assert at["val_macro_f1"].tolist() == [0.5, 0.3, 0.4]
    assert at_common_budget(trials, epochs, "val_macro_f1", maximize=False)[0]["val_macro_f1"].tolist() == [0.1, 0.2, 0.1]
    assert at_common_budget(trials, epochs[epochs["trial_id"] != "C"], "val_macro_f1") == (trials, None)
