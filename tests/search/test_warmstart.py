"""Warm starts: earlier sweeps' trials seed a new study, and TPE suggests from them at once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from hamtune.config import parse_sweep
from hamtune.errors import ConfigError
from hamtune.search.searcher import make_searcher
from hamtune.search.warmstart import WARM_START_ATTR, seed_study, warm_start
from tests.support.handmade import trial_row, write_results

FINGERPRINT = "f" * 16
OLD = {"name": "old", "data": {"image_size": 32}, "training": {"epochs": 4, "patience": 2},
       "scheduler": {"max_epochs": 4}}


def sweep(tmp_path: Path, *sources: Path, **search: Any) -> Any:
    return parse_sweep({
        "name": "new", "storage": str(tmp_path / "runs"), "data": {"image_size": 32},
        "space": {"models": ["densenet121"], "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}},
        "search": {"seed": 0, "trials": 12, "warm_start": [str(s) for s in sources], **search},
        "training": {"weights": "none", "epochs": 4}})


def old_sweep(tmp_path: Path, rows: list[dict[str, Any]], **metadata: Any) -> Path:
    return write_results(tmp_path / "old", [{"mode": "scratch", **row} for row in rows],
                         **{"config": OLD, "dataset_fingerprint": FINGERPRINT, **metadata})


def test_finished_trials_are_complete_stopped_ones_pruned_and_misfits_skipped(tmp_path: Path) -> None:
    old = old_sweep(tmp_path, [
        trial_row("ran", score=0.4, epochs_completed=4, best_epoch=4),      # all 4 epochs
        trial_row("patient", score=0.3, epochs_completed=3, best_epoch=1),  # patience 2 ran out
        trial_row("stopped", score=0.2, epochs_completed=1, best_epoch=1),  # ASHA stopped it
        trial_row("outside", learning_rate=0.5),                            # above the new range
        trial_row("other", model="convnext_small"),                         # not in the new space
        trial_row("failed", status="ERROR", score=math.nan),
    ])
    warm = warm_start(sweep(tmp_path, old), FINGERPRINT)
    assert warm.skipped == 3
    by_id = {t.user_attrs[WARM_START_ATTR].split("#")[1]: t for t in warm.trials}
    assert by_id["ran"].state == by_id["patient"].state == optuna.trial.TrialState.COMPLETE
    assert (by_id["ran"].value, by_id["patient"].value) == (0.4, 0.3)
    assert by_id["stopped"].state == optuna.trial.TrialState.PRUNED
    assert by_id["stopped"].intermediate_values == {1: 0.2}
    assert by_id["ran"].params == {"model": "densenet121", "learning_rate": 1e-3, "dropout": 0.2,
                                   "class_weight_power": 0.5}


@pytest.mark.parametrize(("metadata", "row", "named"), [
    ({"dataset_fingerprint": "0" * 16}, {}, f"dataset fingerprint {'0' * 16} there, {FINGERPRINT} here"),
    ({"config": {**OLD, "data": {"image_size": 64}}}, {}, "image_size 64 there, 32 here"),
    ({}, {"mode": "transfer"}, "densenet121 trained transfer there, scratch here"),
])
def test_another_problem_is_refused_unless_asked_for(tmp_path: Path, metadata: dict, row: dict, named: str) -> None:
    old = old_sweep(tmp_path, [trial_row("a", **row)], **metadata)
    with pytest.raises(ConfigError, match="search.warm_start: .* is another problem") as refused:
        warm_start(sweep(tmp_path, old), FINGERPRINT)
    assert named in str(refused.value) and "warm_start_any_data: true" in str(refused.value)
    assert len(warm_start(sweep(tmp_path, old, warm_start_any_data=True), FINGERPRINT).trials) == 1


def test_a_missing_earlier_sweep_names_its_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"search\.warm_start\[0\]: .*nowhere/trials.parquet: no such result table"):
        warm_start(sweep(tmp_path, tmp_path / "nowhere"), FINGERPRINT)


def test_a_warm_started_study_holds_the_old_trials_and_tpe_suggests_from_them_at_once(tmp_path: Path) -> None:
    """12 earlier trials (more than TPE's start-up of 4 for a 12-trial sweep): those near learning
    rate 1e-4 scored high, the rest low. With 10 sampler seeds, the first suggestion of the
    warm-started sweep lands in [5e-5, 3e-4] every time; the same sweep started cold (random
    start-up over [1e-5, 1e-2], where that band is a quarter of the log range) does in 2 of 10."""
    rates = [1e-5, 3e-5, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3, 1e-2, 8e-5, 1e-4, 1.2e-4, 1.5e-4]
    old = old_sweep(tmp_path, [trial_row(f"t{i}", learning_rate=rate, score=0.6 if 7e-5 < rate < 2e-4 else 0.1,
                                         epochs_completed=4, best_epoch=4) for i, rate in enumerate(rates)])

    def first_suggestion(seed: int, *sources: Path) -> float:
        new = sweep(tmp_path, *sources, seed=seed)
        storage = optuna.storages.InMemoryStorage()
        if sources:
            seed_study(storage, new, warm_start(new, FINGERPRINT))
            study = optuna.load_study(study_name="new", storage=storage)
            assert len(study.trials) == len(rates) and all(WARM_START_ATTR in t.user_attrs for t in study.trials)
        return make_searcher(new, storage).suggest("first")["learning_rate"]

    def near_the_best(*sources: Path) -> int:
        return sum(5e-5 < first_suggestion(seed, *sources) < 3e-4 for seed in range(10))

    assert near_the_best(old) == 10
    assert near_the_best() == 2
