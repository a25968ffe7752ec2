"""Models that learn, on real HAM10000 images: tests that fail when hamtune's models do not learn.

- Overfitting: hamtune's own `build_model` and trial loop (`train_epochs`), from scratch, drive
  training accuracy on 42 real dev-set images to >= 0.9 within a bounded number of steps.
  Checked against a variant that cannot learn (the backbone's weights held fixed, as every
  sweep did before from-scratch mode existed): `HAMTUNE_TEST_FREEZE_BACKBONE=1` makes this test
  freeze the backbone, and then it fails (re-checked when the suite was cut to 30 minutes).
  DenseNet121 only: ConvNeXt-Small needed 32-34 of the 40 allowed epochs, 170-200 s, a tenth of
  the whole suite, for a claim its architecture adds nothing to (the loop and the data are the
  same); that every ConvNeXt-Small variable trains from scratch is tests/training/test_models.py's, and
  the sweep in tests/sweep/test_sweep.py trains it through both phases.
- The transfer path, from a weights file the test makes: a DenseNet121 backbone trained here
  from scratch, saved without its top, loaded as the "pretrained" weights. Phase 1 learns with
  the backbone frozen; phase 2 changes exactly the top blocks.
- A real sweep (Ray Tune + OptunaSearch + ASHA, from scratch) on real dev-set images ends with a
  best val macro F1 clearly above a constant predictor's; ASHA stops a trial at its first rung,
  and Optuna's study records that trial as PRUNED with its epochs; `hamtune export` writes the
  best trial's best-epoch model, which reproduces the table's val_macro_f1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from tests.support.studies import assert_study_agrees_with_tables
from tests.support.sweeps import hamtune_env
from tests.support.real_sweep import real_subset

pytestmark = [pytest.mark.slow, pytest.mark.real_data]

PER_CLASS = 6  # 42 images: 6 of each of the 7 classes
MAX_EPOCHS = 40  # 3 steps of 16 images each: at most 120 steps
TARGET_ACCURACY = 0.9


@pytest.fixture(scope="module")
def few_real_images(dev_dir: Path, hamtune_cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """42 real dev-set images at 32 px (6 per class, one per lesion) and their labels, from hamtune's cache."""
    from hamtune.config import parse_sweep
    from hamtune.data.cache import open_cache
    from hamtune.data.prepared import prepare_data

    sweep = parse_sweep({"name": "few", "data": {"dir": str(dev_dir), "image_size": 32, "cache_dir": str(hamtune_cache)}})
    data = prepare_data(sweep.data)
    table = data.index.table.reset_index(drop=True)
    picked = table.drop_duplicates("lesion_id").groupby("label", group_keys=False).head(PER_CLASS).index.to_numpy()
    images = np.asarray(open_cache(data.index, 32, data.cache_dir).images)[picked]
    return images, table["label"].to_numpy()[picked]


def _training(**settings: Any) -> Any:
    from hamtune.config import parse_sweep

    base = {"epochs": MAX_EPOCHS, "batch_size": 16, "patience": MAX_EPOCHS, "weights": "none",
            "augmentation": "none", "mixed_precision": False}
    return parse_sweep({"name": "learn", "training": {**base, **settings}}).training


def _accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """Training accuracy: the model as it trains (BatchNorm on batch statistics; no dropout or augmentation here)."""
    proba = np.asarray(model(images, training=True))
    return float(np.mean(proba.argmax(axis=1) == labels))


def overfit(backbone: str, images: np.ndarray, labels: np.ndarray) -> tuple[Any, list[float]]:
    """Train from scratch with the trial's own loop until training accuracy >= 0.9 (or MAX_EPOCHS)."""
    from hamtune.training.device import configure_tensorflow
    from hamtune.training.models import freeze_backbone
    from hamtune.training.trial import train_epochs
    from hamtune.training.warm import ModelKey, TrialModel

    configure_tensorflow(2, False, False)
    params = {"model": backbone, "learning_rate": 1e-3, "dropout": 0.0, "unfreeze_depth": 0, "class_weight_power": 0.0}
    trial_model = TrialModel(ModelKey.of(params, _training(), 32), seed=0, dropout=0.0)
    model = trial_model.model
    if os.environ.get("HAMTUNE_TEST_FREEZE_BACKBONE") == "1":
        freeze_backbone(model)  # the variant that cannot learn: random features held fixed, as before
    history = []
    for _ in train_epochs(trial_model, params, _training(), images, np.arange(len(labels)), labels, seed=0):
        history.append(_accuracy(model, images, labels))
        if history[-1] >= TARGET_ACCURACY:
            break
    print(f"{backbone}: training accuracy per epoch {np.round(history, 3).tolist()}")  # shown with -rP
    return model, history


@pytest.fixture(scope="module")
def overfitted_densenet(few_real_images: tuple[np.ndarray, np.ndarray]) -> tuple[Any, list[float]]:
    return overfit("densenet121", *few_real_images)


def test_densenet121_from_scratch_overfits_real_images(overfitted_densenet: tuple[Any, list[float]]) -> None:
    _, history = overfitted_densenet
    assert max(history) >= TARGET_ACCURACY, f"training accuracy per epoch: {np.round(history, 3).tolist()}"


def test_from_scratch_moves_batchnorm_statistics(overfitted_densenet: tuple[Any, list[float]]) -> None:
    """From scratch BatchNorm trains: its moving statistics left their initial 0 and 1."""
    import keras

    model, _ = overfitted_densenet
    norms = [layer for layer in model.get_layer("backbone").layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.trainable for layer in norms)
    assert all(np.abs(np.asarray(layer.moving_mean)).max() > 1e-3 for layer in norms)


# --- the transfer path, from weights trained here -------------------------------------------------------


def test_transfer_from_a_weights_file_learns_the_head_then_unfreezes_exactly_the_top_blocks(
    overfitted_densenet: tuple[Any, list[float]], few_real_images: tuple[np.ndarray, np.ndarray], tmp_path: Path,
) -> None:
    from hamtune.backbones import block_of_layers
    from hamtune.training.models import BACKBONE_LAYER
    from hamtune.training.trial import train_epochs
    from hamtune.training.warm import ModelKey, TrialModel

    import tensorflow as tf

    images, labels = few_real_images
    trained = overfitted_densenet[0]
    # ~100 steps leave BatchNorm's moving statistics (momentum 0.99) far from the data's, and a
    # frozen backbone runs on them: settle them with forward passes in training mode first, as
    # the statistics of a real pretrained release are settled.
    settle = tf.function(lambda x: trained(x, training=True))
    for _ in range(300):
        settle(images)
    pretrained = tmp_path / "densenet121_notop.weights.h5"
    trained.get_layer(BACKBONE_LAYER).save_weights(pretrained)

    params = {"model": "densenet121", "learning_rate": 1e-2, "dropout": 0.0, "unfreeze_depth": 2,
              "class_weight_power": 0.0}
    training = _training(weights=str(pretrained), epochs=6, warmup_epochs=5, fine_tune_lr_scale=0.1)
    trial_model = TrialModel(ModelKey.of(params, training, 32), seed=1, dropout=0.0)
    model = trial_model.model
    net = model.get_layer(BACKBONE_LAYER)
    assert not net.trainable
    block = dict(zip([layer.name for layer in net.layers], block_of_layers([layer.name for layer in net.layers], "densenet121")))
    owner = {id(v): layer.name for layer in net.layers for v in layer.weights}

    def snapshot() -> dict[int, np.ndarray]:
        return {id(v): np.array(v) for v in model.variables}

    def changed_blocks(before: dict[int, np.ndarray], after: dict[int, np.ndarray]) -> set[str]:
        changed = {owner[id(v)] for v in net.variables if not np.array_equal(before[id(v)], after[id(v)])}
        assert not any("_bn" in name or name == "bn" for name in changed)  # BatchNorm stays frozen in transfer mode
        return {block[name] for name in changed}

    initial = snapshot()
    before = _accuracy(model, images, labels)
    epochs = train_epochs(trial_model, params, training, images, np.arange(len(labels)), labels, seed=1)
    phase_1 = [next(epochs) for _ in range(5)]
    after_head = snapshot()
    head_accuracy = _accuracy(model, images, labels)
    assert [r.phase for r in phase_1] == [1] * 5
    # Phase 1 learns with the backbone frozen: the loss falls and the head alone fits the features
    # well above chance (the backbone's BatchNorm statistics, from ~100 steps of training, are rough).
    losses = [round(r.train_loss, 3) for r in phase_1]
    assert phase_1[-1].train_loss < 0.8 * phase_1[0].train_loss, losses
    assert head_accuracy >= before + 0.15, (before, head_accuracy, losses)
    assert all(np.array_equal(initial[id(v)], after_head[id(v)]) for v in net.variables)

    assert next(epochs).phase == 2
    assert changed_blocks(after_head, snapshot()) == {"conv5_block15", "conv5_block16"}

    # A warm trial on the same worker: back at the start, the head phase's compiled step reused
    # (the backbone frozen again), then one block unfrozen, not the previous trial's two.
    trial_model.start(seed=1, dropout=0.0)
    assert all(np.array_equal(initial[id(v)], np.array(v)) for v in model.variables)
    warm = train_epochs(trial_model, {**params, "unfreeze_depth": 1}, _training(weights=str(pretrained), epochs=2, warmup_epochs=1),
                        images, np.arange(len(labels)), labels, seed=1)
    start = snapshot()
    assert next(warm).phase == 1 and changed_blocks(start, snapshot()) == set()
    after_warm_head = snapshot()
    assert next(warm).phase == 2 and changed_blocks(after_warm_head, snapshot()) == {"conv5_block16"}


# --- a real sweep on real images: learning, ASHA, PRUNED, export ---------------------------------------


RECIPE = {"model": "densenet121", "learning_rate": 1.0e-3, "dropout": 0.3, "class_weight_power": 1.0}
STALLED = {"model": "densenet121", "learning_rate": 1.0e-7, "dropout": 0.3, "class_weight_power": 0.0}  # ~ its init
EPOCHS = 5
GRACE = 3
#: How far above a constant predictor the recipe's best epoch must score. The recipe's best of 5
#: epochs on this subset was 0.18-0.28 val macro F1 over three seeds here (a constant predictor:
#: 0.11); the stalled configuration, at its initial weights, 0.11-0.13.
MARGIN = 0.05


@pytest.fixture(scope="module")
def real_sweep(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> Path:
    """The recipe, then a configuration that cannot learn (it stays at its initial weights), one
    after the other with ASHA: at the first rung ASHA compares the second with the first and stops it.

    The rung is after epoch GRACE, not 1: from scratch, one epoch of the recipe did not reliably
    beat the untrained network (val macro F1 0.095 against 0.114 from the same initial weights,
    in one run here), which is the noise a rung after one epoch decides on."""
    import yaml

    root = tmp_path_factory.mktemp("real-sweep")
    sweep = {
        "name": "real",
        "data": {"dir": str(real_subset(dev_dir, root / "data")), "image_size": 32},
        "space": {"models": ["densenet121"], "learning_rate": {"low": 1.0e-7, "high": 1.0e-2, "log": True}},
        "search": {"seed": 0, "trials": 2, "max_concurrent": 1, "points_to_evaluate": [RECIPE, STALLED]},
        "scheduler": {"type": "asha", "reduction_factor": 2, "grace_period": GRACE},
        # A constant rate, as the recipe in a notebook: under the default cosine schedule (warm-up
        # in epoch 1, peak rate at epochs 2-3 of 5) the recipe's best at the rung was 0.124 here,
        # level with the stalled network's 0.127, and ASHA rightly kept both; the recipe reached
        # 0.234 at epoch 5. The rung's mechanics are what this fixture tests.
        "training": {"epochs": EPOCHS, "batch_size": 16, "patience": EPOCHS, "weights": "none",
                     "mixed_precision": False, "lr_schedule": "constant", "weight_decay": 0.0},
        "resources": {"cpus_per_trial": 2},
        "storage": str(root / "runs"),
        "failures": {"max_retries": 0},
    }
    (root / "real.yaml").write_text(yaml.safe_dump(sweep))
    result = subprocess.run([sys.executable, "-m", "hamtune", "sweep", str(root / "real.yaml")], cwd=root,
                            env=hamtune_env(hamtune_cache), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "runs" / "real"


@pytest.mark.ray
def test_a_real_sweep_learns_clearly_better_than_a_constant_predictor(real_sweep: Path) -> None:
    from hamtune.labels import LABEL_OF

    trials = pd.read_parquet(real_sweep / "trials.parquet")
    split = pd.read_csv(real_sweep / "split.csv")
    val = split[split["split"] == "val"]["dx"].map(LABEL_OF).to_numpy()
    majority = split[split["split"] == "train"]["dx"].map(LABEL_OF).mode()[0]
    constant = f1_score(val, np.full_like(val, majority), average="macro", labels=np.unique(val))
    by_rate = trials.set_index("learning_rate")["val_macro_f1"]
    best, stalled = by_rate[RECIPE["learning_rate"]], by_rate[STALLED["learning_rate"]]
    assert trials["mode"].tolist() == ["scratch", "scratch"]
    assert trials["unfreeze_depth"].isna().all()  # every block trained: no depth applies
    assert best >= constant + MARGIN, f"best val macro F1 {best:.3f}, constant predictor {constant:.3f}"
    assert stalled < constant + MARGIN, f"a network that did not train scored {stalled:.3f}: the margin tells nothing"


@pytest.mark.ray
def test_asha_stops_a_trial_at_its_first_rung_and_optuna_records_it_as_pruned(real_sweep: Path) -> None:
    """Read from the study's journal file, as optuna-dashboard and `optuna.load_study` read it."""
    import optuna

    trials = pd.read_parquet(real_sweep / "trials.parquet").set_index("learning_rate")
    assert trials.loc[RECIPE["learning_rate"], "epochs_completed"] == EPOCHS
    assert trials.loc[STALLED["learning_rate"], "epochs_completed"] == GRACE  # stopped at the rung
    by_id = assert_study_agrees_with_tables(real_sweep)
    recipe, stalled = (by_id[trials.loc[point["learning_rate"], "trial_id"]] for point in (RECIPE, STALLED))
    assert recipe.state == optuna.trial.TrialState.COMPLETE
    assert stalled.state == optuna.trial.TrialState.PRUNED
    assert list(stalled.intermediate_values) == list(range(1, GRACE + 1))


@pytest.mark.ray
def test_the_tables_name_each_trials_best_epoch_checkpoint(real_sweep: Path) -> None:
    trials = pd.read_parquet(real_sweep / "trials.parquet")
    for _, trial in trials.iterrows():
        state = json.loads((Path(trial["checkpoint"]) / "state.json").read_text())
        assert state["epoch"] == trial["best_epoch"]


@pytest.mark.ray
def test_export_writes_the_best_epoch_model_that_reproduces_its_val_macro_f1(
    real_sweep: Path, tmp_path: Path, hamtune_cache: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hamtune.config import parse_sweep
    from hamtune.data.cache import open_cache
    from hamtune.data.prepared import prepare_saved
    from hamtune.store.experiment import CONFIG_FILE
    from hamtune.evaluation.files import CONTRACT_FILE as INFO_FILE, MODEL_FILE as KERAS_FILE, SAVED_MODEL_DIR
    from hamtune.training.models import load_model
    from hamtune.evaluation.selection import resolve_experiment

    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
    out = tmp_path / "exported"
    result = subprocess.run([sys.executable, "-m", "hamtune", "export", str(real_sweep), "--rank", "1", "--out", str(out)],
                            env=hamtune_env(hamtune_cache), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (out / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    info = json.loads((out / INFO_FILE).read_text())
    trials = pd.read_parquet(real_sweep / "trials.parquet")
    assert info["trial_id"] == trials["trial_id"].iloc[0] and info["input"]["height"] == 32
    assert info["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]

    experiment = resolve_experiment(str(real_sweep))
    sweep = parse_sweep(json.loads(experiment.read_text(CONFIG_FILE)))
    data = prepare_saved(sweep.data, experiment, needs="the test")
    val = data.positions("val")
    images = np.asarray(open_cache(data.index, 32, data.cache_dir).images)[val]
    model = load_model(out / KERAS_FILE)
    proba = model.predict(images, verbose=0)
    score = f1_score(data.labels(val), proba.argmax(axis=1), average="macro")
    assert score == pytest.approx(trials["val_macro_f1"].iloc[0], abs=1e-6)
