"""Refit: the chosen configuration retrained on train+val, scored once on test, every file reproducible."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from hamtune.errors import ConfigError, DataError, ExperimentError
from hamtune.store.experiment import ExperimentDir
from hamtune.metrics import HEADLINE_SCORES as INTERVAL_SCORES, compute_metrics
from hamtune.evaluation.intervals import lesion_bootstrap, score_interval
from hamtune.evaluation.refit import (
    CARD_FILE,
    CONFUSION_FILE,
    METRICS_FILE,
    MODEL_FILE,
    OUTPUT_FILES,
    PREDICTIONS_FILE,
    RefitResult,
    _out_dir,
    probabilities,
    refit,
    summary,
)
from hamtune.backbones import max_unfreeze_depth
from hamtune.evaluation.selection import choose_trial, resolve_experiment, trial_params
from tests.support.handmade import trial_row, write_results
from tests.support.real_sweep import run_tiny_sweep
from tests.support.figures import assert_png

# --- choosing and resampling ---------------------------------------------------------------------

TRIAL_ROWS = [
    trial_row("aaa", score=0.4, best_epoch=3), trial_row("bbb", score=0.6, best_epoch=5),
    trial_row("bad", score=math.nan, status="ERROR", error="TrialDiverged: nan"),
]
TRIALS = pd.DataFrame(TRIAL_ROWS)


def test_rank_and_trial_id_choose_the_trial() -> None:
    assert choose_trial(TRIALS)["trial_id"] == "bbb"
    assert choose_trial(TRIALS, rank=2)["trial_id"] == "aaa"
    assert choose_trial(TRIALS, trial_id="aaa")["best_epoch"] == 3
    assert choose_trial(TRIALS, trial_id="trial_aaa")["trial_id"] == "aaa"  # the directory name works too


def test_a_from_scratch_row_without_a_depth_reads_back_as_the_trial_trained() -> None:
    """The tables leave the depth empty from scratch (every block trains); a refit trains every block."""
    row = pd.Series({**trial_row("aaa", score=0.4), "model": "densenet121", "unfreeze_depth": math.nan})
    assert trial_params(row)["unfreeze_depth"] == 58 == max_unfreeze_depth("densenet121")
    assert trial_params(pd.Series({**row, "unfreeze_depth": 3}))["unfreeze_depth"] == 3


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"rank": 3}, ConfigError, r"--rank must be in \[1, 2\] \(ranked trials in this experiment\), got 3"),
    ({"rank": 0}, ConfigError, r"--rank must be in \[1, 2\]"),
    ({"trial_id": "zzz"}, ExperimentError, r"--trial 'zzz' is not in this experiment \(trials: bbb, aaa, bad\)"),
    ({"trial_id": "bad"}, ExperimentError, r"--trial 'bad' has no val_macro_f1 \(status ERROR\)"),
])
def test_bad_choices_are_clear_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        choose_trial(TRIALS, **kwargs)


def test_lesion_bootstrap_draws_whole_lesions() -> None:
    # Lesion A: 10 images all right; lesion B: 10 images all wrong. Any resample of whole lesions
    # scores 0, 0.5 or 1; an image bootstrap would give values in between.
    y_true = np.zeros(20, dtype=int)
    y_pred = np.r_[np.zeros(10, dtype=int), np.ones(10, dtype=int)]
    lesions = np.array(["A"] * 10 + ["B"] * 10)
    seen: list[float] = []

    def score(rows: np.ndarray) -> float:
        seen.append(accuracy_score(y_true[rows], y_pred[rows]))
        return seen[-1]

    low, high = lesion_bootstrap(lesions, score, resamples=200, seed=1)
    assert set(seen) == {0.0, 0.5, 1.0}
    assert (low, high) == (0.0, 1.0)


def test_lesion_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 7, 300))
    lesions = np.arange(300) // 2
    score = INTERVAL_SCORES["macro_f1"]

    def statistic(rows: np.ndarray) -> float:
        return score(y_true[rows], y_pred[rows])

    first = lesion_bootstrap(lesions, statistic, resamples=200, seed=3)
    assert first == lesion_bootstrap(lesions, statistic, resamples=200, seed=3)
    assert first != lesion_bootstrap(lesions, statistic, resamples=200, seed=4)
    assert first[0] < score(y_true, y_pred) < first[1]
    perfect = lesion_bootstrap(lesions, lambda rows: score(y_true[rows], y_true[rows]), resamples=50)
    assert perfect == (1.0, 1.0)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_interval_scores_are_the_sweeps_metric_definitions() -> None:
    y_true = np.array([0, 0, 1, 1, 4, 4, 5, 5])
    y_pred = np.array([0, 1, 1, 1, 5, 6, 5, 5])
    proba = np.eye(7)[y_pred]
    metrics = compute_metrics(y_true, proba)
    for name, score in INTERVAL_SCORES.items():
        assert score(y_true, y_pred) == metrics[name], name


# --- refusals before any training ------------------------------------------------------------------


@pytest.fixture
def handmade_experiment(tmp_path: Path) -> Path:
    directory = write_results(tmp_path / "exp", TRIAL_ROWS)
    (directory / "hamtune.json").write_text("{}")
    return directory


def test_a_directory_that_is_not_an_experiment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="is not a hamtune experiment"):
        resolve_experiment(str(tmp_path))


def test_zero_epochs_is_a_config_error(handmade_experiment: Path) -> None:
    with pytest.raises(ConfigError, match="--epochs must be >= 1, got 0"):
        refit(str(handmade_experiment), epochs=0)


@pytest.mark.parametrize("cpus", [0, -1, float("nan")])
def test_cpus_must_be_positive(handmade_experiment: Path, cpus: float) -> None:
    with pytest.raises(ConfigError, match=f"--cpus must be > 0, got {cpus}"):
        refit(str(handmade_experiment), cpus=cpus)


def test_a_malformed_address_is_refused_before_ray_starts(handmade_experiment: Path) -> None:
    with pytest.raises(ConfigError, match=r"--address must be auto, local or HOST:PORT with a port in \[1, 65535\], got 'head:99999'"):
        refit(str(handmade_experiment), address="head:99999")


def test_a_non_empty_output_directory_is_never_overwritten(handmade_experiment: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ExperimentError, match="already exists and is not an empty directory"):
        refit(str(handmade_experiment), out=str(tmp_path / "taken"))
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ExperimentError, match="file already exists and is not an empty directory"):
        refit(str(handmade_experiment), out=str(tmp_path / "file"))


def test_a_remote_experiment_needs_an_explicit_output_directory() -> None:
    with pytest.raises(ExperimentError, match="is remote: pass --out DIR"):
        _out_dir(ExperimentDir("s3://bucket/runs", "sweep"), "abc", None)


# --- one real refit ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> Path:
    return run_tiny_sweep(tmp_path_factory, hamtune_cache)


@pytest.fixture(scope="module")
def refitted(tiny_experiment: Path, tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> RefitResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
        return refit(str(tiny_experiment), out=str(tmp_path_factory.mktemp("refit") / "best"), cpus=2)


@pytest.mark.slow
@pytest.mark.ray
def test_refit_writes_every_file(refitted: RefitResult) -> None:
    assert sorted(path.name for path in refitted.out.iterdir()) == sorted(OUTPUT_FILES)
    assert_png((refitted.out / CONFUSION_FILE).read_bytes())
    text = summary(refitted)
    assert "one evaluation on" in text and "test macro f1" in text and str(refitted.out) in text


@pytest.mark.slow
@pytest.mark.ray
def test_refit_trains_on_train_plus_val_for_the_best_epoch_count(refitted: RefitResult,
                                                                  tiny_experiment: Path) -> None:
    split = pd.read_csv(tiny_experiment / "split.csv")
    report = json.loads((refitted.out / METRICS_FILE).read_text())
    assert report["trial_id"] == refitted.trial["trial_id"] and refitted.trial["rank"] == 1
    assert report["epochs"] == refitted.trial["best_epoch"] == 1 and report["epochs_from"] == "the trial's best epoch"
    assert report["train_images"] == split["split"].isin(["train", "val"]).sum()
    predictions = pd.read_parquet(refitted.out / PREDICTIONS_FILE)
    assert sorted(predictions["image_id"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    assert report["test_images"] == len(predictions)


@pytest.mark.slow
@pytest.mark.ray
def test_test_metrics_are_recomputed_identically_from_the_saved_predictions(refitted: RefitResult) -> None:
    report = json.loads((refitted.out / METRICS_FILE).read_text())
    predictions = pd.read_parquet(refitted.out / PREDICTIONS_FILE)
    recomputed = compute_metrics(predictions["y_true"].to_numpy(), probabilities(predictions))
    assert recomputed.pop("confusion_matrix") == report["confusion_matrix"]
    assert recomputed == pytest.approx(report["test"], rel=0, abs=0, nan_ok=True)
    intervals = report["confidence_intervals"]
    for name, score in INTERVAL_SCORES.items():
        again = score_interval(predictions["y_true"].to_numpy(), predictions["y_pred"].to_numpy(),
                               predictions["lesion_id"].to_numpy(), score, seed=intervals["seed"])
        assert (again["low"], again["high"]) == (intervals[name]["low"], intervals[name]["high"])
        assert intervals[name]["low"] <= report["test"][name] <= intervals[name]["high"]


@pytest.mark.slow
@pytest.mark.ray
def test_the_saved_model_loads_and_reproduces_its_test_predictions(
    refitted: RefitResult, hamtune_cache: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hamtune.config import parse_sweep
    from hamtune.data.cache import open_cache
    from hamtune.data.prepared import prepare_data
    from hamtune.training.models import load_model

    report = json.loads((refitted.out / METRICS_FILE).read_text())
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
    data = prepare_data(parse_sweep(report["config"]).data)
    images = open_cache(data.index, data.image_size, data.cache_dir).images
    predictions = pd.read_parquet(refitted.out / PREDICTIONS_FILE)
    rows = data.index.table.reset_index().set_index("image_id").loc[predictions["image_id"], "index"]
    model = load_model(refitted.out / MODEL_FILE)
    assert model.name == f"hamtune_{report['params']['model']}"
    proba = model.predict(images[rows.to_numpy()], verbose=0)
    np.testing.assert_allclose(proba, probabilities(predictions), atol=1e-5)


@pytest.mark.slow
@pytest.mark.ray
def test_model_card_records_provenance_and_credit(refitted: RefitResult) -> None:
    report = json.loads((refitted.out / METRICS_FILE).read_text())
    card = (refitted.out / CARD_FILE).read_text()
    for expected in (report["data"]["fingerprint"], f"seed {report['data']['split_seed']}", report["trial_id"],
                     "CC BY-NC 4.0", "Tschandl", f"tensorflow {report['versions']['tensorflow']}",
                     "synthetic", "| macro_f1 |", "95% CI"):
        assert expected in card, expected


@pytest.mark.slow
@pytest.mark.ray
def test_changed_data_is_refused(tiny_experiment: Path, tmp_path: Path, hamtune_cache: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_experiment, copy, ignore=shutil.ignore_patterns("trial_*"))
    marker = json.loads((copy / "hamtune.json").read_text())
    (copy / "hamtune.json").write_text(json.dumps({**marker, "fingerprint": "0000000000000000"}))
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
    with pytest.raises(DataError, match="dataset changed since .* refit needs the data the sweep chose on"):
        refit(str(copy), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_refit_as_a_ray_task_matches_the_in_process_refit(refitted: RefitResult, tiny_experiment: Path,
                                                          tmp_path: Path, hamtune_cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    on_ray = refit(str(tiny_experiment), out=str(tmp_path / "ray"), address="local")
    assert on_ray.report["trial_id"] == refitted.report["trial_id"]
    local = pd.read_parquet(refitted.out / PREDICTIONS_FILE)
    remote = pd.read_parquet(on_ray.out / PREDICTIONS_FILE)
    assert remote["image_id"].tolist() == local["image_id"].tolist()
    np.testing.assert_allclose(probabilities(remote), probabilities(local), atol=1e-5)  # same seed, same code
    assert sorted(path.name for path in on_ray.out.iterdir()) == sorted(OUTPUT_FILES)
