"""The Optuna search space, exercised with real Optuna (and Ray's OptunaSearch, without starting Ray)."""

from __future__ import annotations

import math
import pickle
import statistics
import warnings
from functools import partial
from pathlib import Path

import optuna
import pytest

from hamtune.config import SweepConfig, parse_sweep
from hamtune.search.space import define_space, describe_space, make_sampler, points_to_evaluate, unfreeze_parameter

optuna.logging.set_verbosity(optuna.logging.WARNING)

POINTS = [
    {"model": "convnext_small", "learning_rate": 1.0e-3, "dropout": 0.1, "class_weight_power": 0.5, "unfreeze_depth": 2},
    {"model": "densenet121", "learning_rate": 2.0e-4, "dropout": 0.4, "class_weight_power": 1.0, "unfreeze_depth": 7},
]


@pytest.fixture(scope="module")
def sweep() -> SweepConfig:
    return parse_sweep({
        "name": "space",
        "space": {
            "learning_rate": {"low": 1.0e-5, "high": 1.0e-2, "log": True},
            "dropout": {"low": 0.1, "high": 0.4},
            "class_weight_power": {"low": 0.25, "high": 1.0},
            "unfreeze_depth": {"convnext_small": {"low": 1, "high": 3}, "densenet121": {"low": 5, "high": 9}},
        },
        "search": {"points_to_evaluate": POINTS},
    })


def _objective(params: dict) -> float:
    """A made-up score so TPE leaves its random start-up phase and models the space."""
    return -abs(math.log10(params["learning_rate"]) + 3.5) - params["dropout"] + 0.01 * params["unfreeze_depth"]


def _run(sweep: SweepConfig, seed: int, trials: int, tell: bool = True) -> list[dict]:
    study = optuna.create_study(sampler=make_sampler(seed), direction="maximize")
    suggested = []
    for _ in range(trials):
        trial = study.ask()
        extra = define_space(trial, sweep.space)
        params = {**trial.params, **extra}
        suggested.append(params)
        if tell:
            study.tell(trial, _objective(params))
    return suggested


def test_every_suggestion_is_inside_the_space(sweep: SweepConfig) -> None:
    space = sweep.space
    suggested = _run(sweep, seed=0, trials=40)  # 10 random start-up trials, then multivariate TPE
    assert {p["model"] for p in suggested} == set(space.models)
    for params in suggested:
        model = params["model"]
        depth = space.unfreeze_depth[model]
        assert params["unfreeze_depth"] == params[unfreeze_parameter(model)]
        assert depth.low <= params["unfreeze_depth"] <= depth.high
        assert isinstance(params["unfreeze_depth"], int)
        other = next(m for m in space.models if m != model)
        assert unfreeze_parameter(other) not in params  # conditional: only the chosen model's depth
        for name in ("learning_rate", "dropout", "class_weight_power"):
            bounds = getattr(space, name)
            assert bounds.low <= params[name] <= bounds.high, name


def test_learning_rate_is_log_uniform(sweep: SweepConfig) -> None:
    rates = [p["learning_rate"] for p in _run(sweep, seed=1, trials=600, tell=False)]
    geometric_mean = math.sqrt(sweep.space.learning_rate.low * sweep.space.learning_rate.high)  # 3.2e-4
    assert abs(math.log10(statistics.median(rates)) - math.log10(geometric_mean)) < 0.2
    # A uniform draw would put the median near 5e-3 and almost nothing below 1e-4.
    assert 0.2 < sum(r < 1.0e-4 for r in rates) / len(rates) < 0.47


def test_dropout_is_uniform(sweep: SweepConfig) -> None:
    dropouts = [p["dropout"] for p in _run(sweep, seed=1, trials=600, tell=False)]
    assert abs(statistics.median(dropouts) - 0.25) < 0.03


def test_same_seed_same_suggestions_other_seed_differs(sweep: SweepConfig) -> None:
    first = _run(sweep, seed=7, trials=15)
    assert _run(sweep, seed=7, trials=15) == first
    assert _run(sweep, seed=8, trials=15) != first


def test_sampler_is_seeded_tpe_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = make_sampler(3)
    assert isinstance(sampler, optuna.samplers.TPESampler)


def test_points_to_evaluate_use_the_per_model_parameter_names(sweep: SweepConfig) -> None:
    assert points_to_evaluate(sweep) == [
        {"model": "convnext_small", "unfreeze_depth_convnext_small": 2, "learning_rate": 1.0e-3, "dropout": 0.1, "class_weight_power": 0.5},
        {"model": "densenet121", "unfreeze_depth_densenet121": 7, "learning_rate": 2.0e-4, "dropout": 0.4, "class_weight_power": 1.0},
    ]
    assert points_to_evaluate(parse_sweep({"name": "x"})) == []


def test_enqueued_points_come_back_first_and_exactly(sweep: SweepConfig) -> None:
    study = optuna.create_study(sampler=make_sampler(0), direction="maximize")
    for point in points_to_evaluate(sweep):
        study.enqueue_trial(point)
    for expected in POINTS:
        trial = study.ask()
        extra = define_space(trial, sweep.space)
        assert {**trial.params, **extra} == {
            **expected, unfreeze_parameter(expected["model"]): expected["unfreeze_depth"]
        }


def test_ray_optuna_search_gives_the_trainable_one_unfreeze_key(sweep: SweepConfig, tmp_path: Path) -> None:
    """What a Ray trial's config holds, from Ray's own OptunaSearch (no Ray cluster needed)."""
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=partial(define_space, space=sweep.space), metric="val_macro_f1", mode="max",
        sampler=make_sampler(0), points_to_evaluate=points_to_evaluate(sweep),
    )
    first = searcher.suggest("trial_1")
    assert first == {**POINTS[0], "unfreeze_depth_convnext_small": 2}
    configs = [searcher.suggest(f"trial_{i}") for i in range(2, 6)]
    for config in configs:
        assert set(config) == {"model", "learning_rate", "dropout", "class_weight_power", "unfreeze_depth",
                               unfreeze_parameter(config["model"])}
        assert config["unfreeze_depth"] == config[unfreeze_parameter(config["model"])]
    # The experiment checkpoint pickles the searcher, and with it the partial of define_space.
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert set(restored.suggest("trial_6")) >= {"model", "unfreeze_depth"}


def test_optuna_is_told_each_trials_best_epoch_not_its_last(sweep: SweepConfig) -> None:
    """Ray's OptunaSearch tells Optuna the metric of a trial's last report. The searcher's metric
    is the trial's best epoch so far, so TPE learns the value the result tables rank trials by,
    also for a trial whose last epoch (stopped by ASHA or patience) was worse."""
    from hamtune.search.searcher import make_searcher
    from hamtune.keys import FINISHED_KEY, OBJECTIVE, SEARCH_METRIC
    from hamtune.training.checkpoint import TrialState

    searcher = make_searcher(sweep, optuna.storages.InMemoryStorage())
    searcher.suggest("t1")
    state = TrialState()
    for epoch, score in enumerate([0.2, 0.5, 0.3], start=1):
        state.record(epoch, {OBJECTIVE.name: score})
        report = {OBJECTIVE.name: score, SEARCH_METRIC: state.best_score, "training_iteration": epoch, "epoch": epoch,
                  FINISHED_KEY: epoch == 3}  # patience ran out at epoch 3: the trial ended itself
        searcher.on_trial_result("t1", report)
    searcher.on_trial_complete("t1", result=report)
    # Ray keeps its Optuna study private; the sweep's points_to_evaluate are queued in it too.
    trial = searcher._ot_study.trials[searcher._ot_trials["t1"].number]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == 0.5


def test_a_diverged_trial_teaches_optuna_the_worst_score(sweep: SweepConfig) -> None:
    """Optuna records a diverged trial as a complete trial with macro F1 0, not as a failure
    that TPE would ignore; the tables still see no score (a NaN objective)."""
    import math

    from hamtune.search.searcher import make_searcher
    from hamtune.sweep.tune import diverged_report
    from hamtune.keys import OBJECTIVE
    from hamtune.training.trial import TrialDiverged

    searcher = make_searcher(sweep, optuna.storages.InMemoryStorage())
    searcher.suggest("t1")
    report = diverged_report(TrialDiverged("training loss became nan at epoch 2"))
    searcher.on_trial_complete("t1", result=report)
    trial = searcher._ot_study.trials[searcher._ot_trials["t1"].number]
    assert (trial.state, trial.value) == (optuna.trial.TrialState.COMPLETE, 0.0)
    assert math.isnan(report[OBJECTIVE.name])


def test_space_function_pickles(sweep: SweepConfig) -> None:
    space_fn = pickle.loads(pickle.dumps(partial(define_space, space=sweep.space)))
    trial = optuna.create_study(sampler=make_sampler(0)).ask()
    assert space_fn(trial)["unfreeze_depth"] == trial.params[unfreeze_parameter(trial.params["model"])]


def test_describe_space(sweep: SweepConfig) -> None:
    assert describe_space(sweep.space) == [
        "model               categorical [convnext_small, densenet121]",
        "unfreeze_depth      convnext_small: int [1, 3]",
        "unfreeze_depth      densenet121: int [5, 9]",
        "learning_rate       log-uniform [1e-05, 0.01]",
        "dropout             uniform [0.1, 0.4]",
        "class_weight_power  uniform [0.25, 1]",
    ]


def _report(epoch: int, best: float, finished: bool = False) -> dict:
    from hamtune.keys import FINISHED_KEY, OBJECTIVE, SEARCH_METRIC

    return {OBJECTIVE.name: best, SEARCH_METRIC: best, "training_iteration": epoch, "epoch": epoch, FINISHED_KEY: finished}


@pytest.mark.parametrize(("result", "pruned"), [
    (_report(2, 0.3), True),  # stopped at a rung: 2 of 20 epochs, not finished by itself
    (_report(2, 0.3, finished=True), False),  # its patience ran out
    (_report(20, 0.3), False),  # reached max_epochs: ASHA stops every trial there
    ({"diverged": "loss became nan", "best_val_macro_f1": 0.0}, False),
    (None, False),
])
def test_is_pruned_tells_a_scheduler_stop_from_a_trial_that_ended_itself(result: dict | None, pruned: bool) -> None:
    from hamtune.search.searcher import is_pruned

    assert is_pruned(result, max_epochs=20) is pruned


def test_a_trial_stopped_by_the_scheduler_reaches_optuna_as_pruned_with_its_epochs(sweep: SweepConfig) -> None:
    """Tune gives the searcher every report but the one that made ASHA stop the trial; the
    searcher adds that one and tells Optuna PRUNED, so TPE never takes a 2-epoch score for a
    finished 20-epoch run."""
    from hamtune.search.searcher import make_searcher

    searcher = make_searcher(sweep, optuna.storages.InMemoryStorage())
    searcher.suggest("t1")
    searcher.on_trial_result("t1", _report(1, 0.2))
    searcher.on_trial_complete("t1", result=_report(2, 0.25))  # the stopping report: not seen before
    trial = searcher._ot_study.trials[searcher._ot_trials["t1"].number]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.2, 2: 0.25}
    assert trial.value == 0.25  # Optuna gives a pruned trial its last intermediate value


def test_a_from_scratch_model_has_no_depth_to_search() -> None:
    """From scratch every block trains: the trial gets the full block count, Optuna no depth parameter."""
    scratch = parse_sweep({"name": "s", "space": {"models": ["densenet121"]}, "training": {"weights": "none"}})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    trial = study.ask()
    assert define_space(trial, scratch.space) == {"unfreeze_depth": 58}
    assert set(trial.params) == {"model", "learning_rate", "dropout", "class_weight_power"}
    assert any("not searched (from scratch: all 58 blocks train)" in line for line in describe_space(scratch.space))
