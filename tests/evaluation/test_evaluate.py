"""`hamtune evaluate` and `hamtune predict` end to end on real HAM10000 images, through the real commands.

A small real sweep (a lesion-whole subset of the dev set, 2 trials of 1 epoch at 32 px), then
the whole final-model path at its smallest: the top 2 configurations on 2 folds as Ray tasks,
TTA and calibration (forced), the ensemble where its rule allows and the melanoma threshold; then new images through the model
directory. Tiny training means weak models: these tests check that every number is what the
files say and that the written model is the evaluated one, not that the model is good (the
benchmark in benchmarks/final_model.py measures that, from scratch on the dev set).

The sweep is in transfer mode from the suite's backbone weights file (conftest's
`backbone_weights_file`), so its one epoch is the head-only warm-up: each of the 8 models this
module trains (2 trials, 4 fold runs, 2 refits) traces a step through a frozen DenseNet121 in
seconds instead of the ~40 s a from-scratch step takes. Which layers train is the trial loop's
business, tested in tests/training/test_learning.py; evaluation's code is the same in both modes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score

from hamtune.evaluation.artefact import (
    CARD_FILE, CONTRACT_FILE, CV_FILE, EVALUATION_FILE, FINAL_FILES, PREDICTIONS_FILE, SAVED_MODEL_DIR,
)
from hamtune.evaluation.refit import probabilities
from hamtune.evaluation.resume import WORK_DIR
from hamtune.labels import CLASSES
from tests.support.sweeps import backbone_weights_file, hamtune_env
from tests.support.processes import kill_group, own_session, wait_until
from tests.support.real_sweep import real_subset

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.real_data]

POINTS = [{"model": "densenet121", "learning_rate": 1.0e-3, "dropout": 0.3, "class_weight_power": 1.0,
           "unfreeze_depth": 1},
          {"model": "densenet121", "learning_rate": 3.0e-3, "dropout": 0.1, "class_weight_power": 0.5,
           "unfreeze_depth": 1}]


def _hamtune(*args: str, cache: Path, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hamtune", *args], cwd=cwd, env=hamtune_env(cache),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path, dev_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("final")
    sweep = {
        "name": "small",
        "data": {"dir": str(real_subset(dev_dir, root / "data", fraction=0.1, at_least=20)), "image_size": 32},
        "space": {"models": ["densenet121"], "unfreeze_depth": {"densenet121": {"low": 0, "high": 1}}},
        "search": {"seed": 0, "trials": 2, "max_concurrent": 2, "points_to_evaluate": POINTS},
        "scheduler": "none",
        "training": {"epochs": 1, "warmup_epochs": 1, "batch_size": 16, "patience": 1,
                     "weights": {"densenet121": backbone_weights_file("densenet121")}, "mixed_precision": False},
        "resources": {"cpus_per_trial": 1},
        "storage": str(root / "runs"),
        "failures": {"max_retries": 0},
    }
    (root / "small.yaml").write_text(yaml.safe_dump(sweep))
    result = _hamtune("sweep", str(root / "small.yaml"), cache=hamtune_cache, cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "runs" / "small"


@pytest.fixture(scope="module")
def final(experiment: Path, hamtune_cache: Path) -> tuple[Path, str]:
    """The evaluation, killed (SIGKILL) once its first run has finished, then run again to its end:
    the second attempt reuses that run. The same directory with other arguments is refused."""
    out = experiment.parent / "final-model"
    # TTA and calibration forced, so the path is known whatever one epoch's out-of-fold scores say.
    args = ["evaluate", str(experiment), "--top", "2", "--folds", "2", "--ensemble", "--force-tta",
            "--force-calibration", "--address", "local", "--out", str(out)]
    log = experiment.parent / "evaluate-killed.log"
    with own_session([sys.executable, "-m", "hamtune", *args], log, experiment.parent,
                     hamtune_env(hamtune_cache)) as first:
        wait_until(lambda: any((out / WORK_DIR).glob("*.npz")), 900, "a first finished run", first, log)
        kill_group(first)
    kept = list((out / WORK_DIR).glob("*.npz"))
    other = _hamtune(*[("3" if arg == "2" and args[i - 1] == "--folds" else arg) for i, arg in enumerate(args)],
                     cache=hamtune_cache, cwd=experiment.parent, timeout=300)
    assert other.returncode == 2 and "holds an unfinished evaluation started with other arguments (folds 2 then, " \
        "3 now)" in other.stderr, other.stderr[-3000:]
    assert "Traceback" not in other.stderr
    result = _hamtune(*args, cache=hamtune_cache, cwd=experiment.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    # Every run the killed attempt kept is reused, none trained again; the unfinished state is gone.
    assert result.stderr.count("finished by an earlier attempt, reused") == len(kept), result.stderr[-6000:]
    assert not (out / WORK_DIR).exists()
    return out, result.stdout


def test_evaluate_writes_one_final_model_directory(final: tuple[Path, str]) -> None:
    out, printed = final
    assert sorted(path.name for path in out.iterdir()) == sorted(FINAL_FILES)
    assert (out / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    report = json.loads((out / EVALUATION_FILE).read_text())
    names = [row["variant"] for row in report["variants"]]
    # Transfer mode trains with the full augmentation (rotations included): TTA over the 8 dihedral views.
    assert names[:4] == ["sweep's best, refit", "CV-chosen, refit", "CV-chosen + TTA (dihedral)",
                         "CV-chosen + TTA (dihedral) + calibration"]
    steps = {step["step"]: step for step in report["steps"]}
    assert steps["tta"]["kept"] and steps["calibration"]["kept"] and report["tta"] == "dihedral"
    if len(names) == 5:  # both configurations within one standard error: an ensemble was tried
        assert names[4] == "ensemble of 2 (TTA (dihedral), calibrated)"
        assert steps["ensemble"]["kept"] == (steps["ensemble"]["with_step"] > steps["ensemble"]["without"])
    else:
        assert "ensemble" not in steps and report["ensemble_notes"][-1].endswith("no ensemble")
    final = names[4] if steps.get("ensemble", {}).get("kept") else names[3]
    assert report["final_variant"] == final and f"{final}: " in printed and "<- final" in printed
    for name in names:
        assert name in printed
    for step in steps.values():
        assert step["decision"] in printed
    assert "cross-validation" in printed and str(out) in printed
    card = (out / CARD_FILE).read_text()
    for expected in ("How it was chosen", "CC BY-NC 4.0", "Tschandl", report["data"]["fingerprint"], "| variant |"):
        assert expected in card, expected


def test_cross_validation_covers_train_plus_val_once_per_configuration(final: tuple[Path, str],
                                                                       experiment: Path) -> None:
    out, _ = final
    folds = pd.read_parquet(out / CV_FILE)
    split = pd.read_csv(experiment / "split.csv")
    train_val = int(split["split"].isin(["train", "val"]).sum())
    assert folds.groupby("config")["images"].sum().tolist() == [train_val, train_val]
    assert sorted(folds["fold"].unique()) == [1, 2]
    report = json.loads((out / EVALUATION_FILE).read_text())
    trials = pd.read_parquet(experiment / "trials.parquet")
    members = [m["trial_id"] for m in report["members"]]
    assert members == [t for t in trials["trial_id"].head(2) if t in members]  # sweep order
    assert report["chosen_trial"] in trials["trial_id"].head(2).tolist()
    assert report["train_val_images"] == train_val


def test_every_reported_number_is_recomputed_from_the_saved_predictions(final: tuple[Path, str]) -> None:
    out, _ = final
    report = json.loads((out / EVALUATION_FILE).read_text())
    predictions = pd.read_parquet(out / PREDICTIONS_FILE)
    proba = probabilities(predictions)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    final = next(row for row in report["variants"] if row["variant"] == report["final_variant"])
    scores = final["scores"]
    y = predictions["y_true"].to_numpy()
    assert scores["macro_f1"]["value"] == pytest.approx(f1_score(y, proba.argmax(axis=1), average="macro",
                                                                 zero_division=0))
    for row in report["variants"]:
        for name, estimate in row["scores"].items():
            # ECE is biased upwards on a resample (fewer images per bin), so its percentile interval
            # may lie wholly above the estimate; every other score's interval brackets it.
            if name != "ece" and not np.isnan(estimate["value"]):
                assert estimate["low"] - 1e-9 <= estimate["value"] <= estimate["high"] + 1e-9, (row["variant"], name)
    mel = CLASSES.index("mel")
    called = predictions["y_pred_mel_threshold"] == mel
    assert (called == (predictions["prob_mel"] >= final["mel_threshold"])).all()
    assert report["reproduction_max_difference"] <= 1e-4


def test_the_model_file_is_the_evaluated_model(final: tuple[Path, str], hamtune_cache: Path, dev_dir: Path) -> None:
    out, _ = final
    contract = json.loads((out / CONTRACT_FILE).read_text())
    assert contract["classes"] == list(CLASSES) and contract["input"]["dtype"] == "uint8"
    report = json.loads((out / EVALUATION_FILE).read_text())
    assert contract["tta"] == "dihedral" and contract["variant"] == report["final_variant"]
    assert [m["trial_id"] for m in contract["members"]] == [m["trial_id"] for m in report["members"]]
    predictions = pd.read_parquet(out / PREDICTIONS_FILE).head(5)
    images = [str(next(dev_dir.glob(f"*/{image_id}.jpg")))
              for image_id in predictions["image_id"]]
    result = _hamtune("predict", str(out), *images, "--format", "csv", cache=hamtune_cache, cwd=out)
    assert result.returncode == 0, result.stderr[-4000:]
    from io import StringIO

    table = pd.read_csv(StringIO(result.stdout))
    assert table["image"].tolist() == images
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASSES]].to_numpy(), probabilities(predictions), atol=2e-4)
    assert table["prediction"].tolist() == [CLASSES[i] for i in predictions["y_pred_mel_threshold"]]


def test_predict_refuses_bad_input_in_one_line(final: tuple[Path, str], tmp_path: Path,
                                               hamtune_cache: Path) -> None:
    out, _ = final
    (tmp_path / "notes.jpg").write_text("not an image")
    for args, message in [
        ((str(out), str(tmp_path / "notes.jpg")), "cannot read image"),
        ((str(out), str(tmp_path / "missing.jpg")), "not found"),
        ((str(tmp_path), str(tmp_path / "notes.jpg")), "is not a hamtune final model directory"),
    ]:
        result = _hamtune("predict", *args, cache=hamtune_cache, cwd=tmp_path, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--top", "3"), "--top 3 needs 3 finished trials with a val_macro_f1, but this experiment has 2"),
    (("--top", "1", "--folds", "50"), "--folds 50 needs at least 50 lesions of every class in train+val, but "),
    (("--mel-sensitivity", "1.5"), r"--mel-sensitivity must be in (0, 1), got 1.5"),
])
def test_evaluate_refuses_bad_input_in_one_line(experiment: Path, tmp_path: Path, hamtune_cache: Path,
                                                args: tuple[str, ...], message: str) -> None:
    result = _hamtune("evaluate", str(experiment), *args, "--out", str(tmp_path / "out"), cache=hamtune_cache,
                      cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_evaluate_refuses_an_experiment_whose_data_changed(experiment: Path, tmp_path: Path,
                                                           hamtune_cache: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns("trial_*"))
    marker = json.loads((copy / "hamtune.json").read_text())
    (copy / "hamtune.json").write_text(json.dumps({**marker, "fingerprint": "0000000000000000"}))
    result = _hamtune("evaluate", str(copy), "--top", "1", "--out", str(tmp_path / "out"), cache=hamtune_cache,
                      cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "evaluate needs the data the sweep chose on" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
