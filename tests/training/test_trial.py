"""The trial: phase schedule, best-epoch/patience bookkeeping, and `hamtune train` run for real."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

import pytest

from hamtune.cli import main
from hamtune.data.synth import write_synthetic
from hamtune.training.checkpoint import TrialState
from hamtune.training.phases import phase_of
from hamtune.training.trial import trial_seed
from hamtune.training.warm import compile_model


@pytest.mark.parametrize(("epoch", "warmup", "depth", "phase"), [
    (1, 2, 4, 1), (2, 2, 4, 1), (3, 2, 4, 2),  # warm-up epochs train the head, then fine-tune
    (5, 2, 0, 1),                              # depth 0: the backbone never unfreezes
    (1, 0, 1, 2),                              # no warm-up: fine-tuning from the first epoch
])
def test_phase_schedule(epoch: int, warmup: int, depth: int, phase: int) -> None:
    assert phase_of(epoch, warmup, depth) == phase


@pytest.mark.parametrize("epoch", [1, 2, 7])
def test_from_scratch_every_epoch_is_phase_zero(epoch: int) -> None:
    assert phase_of(epoch, warmup_epochs=3, unfreeze_depth=58, from_scratch=True) == 0


def test_state_keeps_the_best_epoch_and_counts_patience() -> None:
    state = TrialState()
    for epoch, score in enumerate([0.30, 0.42, 0.41, 0.42, 0.50], start=1):
        state.record(epoch, {"val_macro_f1": score, "val_loss": 1.0 / epoch})
        if epoch == 4:
            assert state.epochs_without_improvement == 2  # a tie is not an improvement
    assert state.epoch == 5 and state.best_epoch == 5 and state.epochs_without_improvement == 0
    assert state.best == {"val_macro_f1": 0.50, "val_loss": 0.2}


@pytest.mark.slow
@pytest.mark.backbone
def test_train_command_runs_one_trial_in_process(
    capsys: pytest.CaptureFixture, tmp_path: Path, hamtune_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_synthetic(tmp_path / "data", images=200, seed=1, size=(96, 72))
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(hamtune_cache))
    code = main([
        "train", "--data", str(data), "--model", "densenet121", "--image-size", "32", "--epochs", "3",
        "--weights", "none", "--cpus", "1",
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert "training densenet121 from scratch" in out and "augmentation flips" in out
    epochs = re.findall(r"epoch +(\d) \(phase (\d)\).*val_macro_f1 ([0-9.]+)", out)
    assert [(e, p) for e, p, _ in epochs] == [("1", "0"), ("2", "0"), ("3", "0")]
    best = max(epochs, key=lambda row: float(row[2]))
    assert f"val_macro_f1 {float(best[2]):.4f}" in out.splitlines()[-1]


def test_predictor_matches_predict_and_is_traced_once_across_recompiles() -> None:
    """One trace serves full and partial batches before and after the phase-2 recompile."""
    import keras
    import numpy as np
    import tensorflow as tf

    from hamtune.training.inference import make_predictor

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Dropout(0.5)(x)))
    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(10, np.int32))).batch(4)
    predict = make_predictor(model)
    for learning_rate in (1e-2, 1e-3):  # a recompile, as at the phase boundary
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
        model.fit(dataset, verbose=0)
        proba = predict(dataset)
        assert proba.shape == (10, 7)
        np.testing.assert_allclose(proba, model.predict(dataset, verbose=0), rtol=1e-6, atol=1e-7)
    infer = next(cell.cell_contents for cell in predict.__closure__
                 if isinstance(cell.cell_contents, tf.types.experimental.PolymorphicFunction))
    assert infer.experimental_get_tracing_count() == 1


def test_checkpoint_holds_only_trained_variables_and_restores_the_whole_model(tmp_path: Path) -> None:
    """Frozen backbone weights are rebuilt from the seed, not stored; everything else round-trips."""
    import keras
    import numpy as np

    from hamtune.errors import HamtuneError
    from hamtune.training.models import build_model, freeze_backbone, unfreeze
    from hamtune.training.checkpoint import WEIGHTS_FILE, restore, save_checkpoint

    def built(seed: int = 7) -> keras.Model:
        keras.utils.set_random_seed(seed)
        model = build_model("densenet121", 32, 0.2, seed=seed)
        freeze_backbone(model)
        unfreeze(model, "densenet121", 1)  # phase 2: the last block is trained too
        compile_model(model, 1e-3)
        return model

    trained = built()
    for variable in trained.trainable_variables:
        variable.assign(variable + 1.0)
    save_checkpoint(tmp_path, trained, TrialState(epoch=3), phase=2)
    stored = np.load(tmp_path / WEIGHTS_FILE)
    assert 0 < len(stored.files) - 1 < len(trained.variables) // 2

    restored = built()
    restore(tmp_path, restored, optimizer=False)
    for mine, theirs in zip(trained.variables, restored.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    with pytest.raises(HamtuneError, match=r"does not fit this model: it has \d+ variables, this one \d+; "
                                           r"only in the checkpoint: conv1_conv/kernel, .* and \d+ more; only here: convnext_small_stem/"):
        restore(tmp_path, build_model("convnext_small", 32, 0.2), optimizer=False)


def test_a_from_scratch_checkpoint_carries_batchnorm_statistics(tmp_path: Path) -> None:
    """From scratch every variable moves, the non-trainable BatchNorm statistics included: a
    retried, resumed or exported model must come back with them, not with their initial values."""
    import keras
    import numpy as np

    from hamtune.training.models import build_model
    from hamtune.training.checkpoint import restore, save_checkpoint
    from hamtune.training.phases import PHASE_SCRATCH

    def built() -> keras.Model:
        keras.utils.set_random_seed(7)
        model = build_model("densenet121", 32, 0.2, weights="none", seed=7)
        compile_model(model, 1e-3)
        return model

    trained = built()
    moving = [v for v in trained.non_trainable_variables if "moving" in v.path]
    assert moving
    for variable in trained.variables:
        if variable.dtype.startswith("float"):
            variable.assign(variable + 0.5)
    save_checkpoint(tmp_path, trained, TrialState(epoch=2), phase=PHASE_SCRATCH)
    restored = built()
    restore(tmp_path, restored, optimizer=False)
    for mine, theirs in zip(trained.variables, restored.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def test_trials_of_a_backbone_share_their_seed_unless_seed_per_trial() -> None:
    """Common random numbers by default: one seed per backbone, whatever the hyperparameters. With
    `seed_per_trial` the seed follows the configuration (not Ray's trial id), so a re-run or a
    refit finds it from the table's row (numpy scalars) as the trial computed it from Ray's config."""
    import numpy as np

    from hamtune.config import parse_sweep

    common = parse_sweep({"name": "x"}).training
    per_trial = parse_sweep({"name": "x", "training": {"seed_per_trial": True}}).training
    params = {"model": "densenet121", "learning_rate": 1e-3, "dropout": 0.2, "unfreeze_depth": 1,
              "class_weight_power": 0.5}
    other = {**params, "dropout": 0.3}
    assert trial_seed(0, params, common) == trial_seed(0, other, common)
    assert trial_seed(0, params, common) != trial_seed(0, {**params, "model": "convnext_small"}, common)

    from_table = {**params, "learning_rate": np.float64(1e-3), "unfreeze_depth": np.int64(1)}
    from_ray = {**params, "unfreeze_depth_densenet121": 1}
    assert trial_seed(0, params, per_trial) == trial_seed(0, from_table, per_trial) == trial_seed(0, from_ray, per_trial)
    assert trial_seed(0, params, per_trial) != trial_seed(0, other, per_trial)
    assert trial_seed(7, params, per_trial) == trial_seed(0, params, per_trial) + 7


def _dense_pair(output: str = "out") -> Any:
    """A hidden and an output Dense layer, trained one step with Adam (so every variable is built)."""
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name=output)(keras.layers.Dense(4, name="hidden")(inputs)))
    compile_model(model, 1e-2)
    model.fit(np.ones((4, 3)), np.zeros(4, dtype=int), verbose=0)
    return model


def test_checkpoint_keys_are_paths_without_kerass_per_process_numbers() -> None:
    """A model rebuilt in the same process gets `seed_generator_6` and, after a recompile,
    `trial_adam_1` where a fresh process has `seed_generator` and `trial_adam`: the keys must not change."""
    import keras

    from hamtune.training.models import build_model
    from hamtune.training.checkpoint import checkpoint_keys

    keys = []
    for _ in range(2):  # no clear_session: Keras's name counters keep counting
        model = build_model("densenet121", 32, 0.2, weights="none", augmentation="full")
        compile_model(model, 1e-3)
        compile_model(model, 1e-3)  # the phase-boundary recompile: a second Adam
        model.optimizer.build(model.trainable_variables)
        keys.append((checkpoint_keys(model.variables), checkpoint_keys(model.optimizer.variables)))
    assert keys[0] == keys[1]
    weights, optimizer = keys[0]
    assert len(set(weights)) == len(weights) and len(set(optimizer)) == len(optimizer)
    seeds = [key for key in weights if key.startswith("seed_generator")]
    assert seeds[:3] == ["seed_generator/seed_generator_state", "seed_generator/seed_generator_state#1",
                         "seed_generator/seed_generator_state#2"]
    assert "conv1_conv/kernel" in weights and weights[-2:] == ["classifier/kernel", "classifier/bias"]
    assert optimizer[:5] == ["trial_adam/iteration", "trial_adam/learning_rate", "trial_adam/warmup_steps",
                            "trial_adam/decay_steps", "trial_adam/weight_decay"]
    keras.backend.clear_session()


def test_restore_goes_by_name_and_refuses_a_checkpoint_of_other_variables(tmp_path: Path) -> None:
    """Variables listed in another order (what a Keras upgrade may do) load into the variables of
    the same name; a checkpoint whose names differ (what position keys would have loaded
    silently: same count and shapes) is refused, naming the variables on each side, and nothing
    is assigned."""
    from hamtune.errors import HamtuneError
    from hamtune.training.checkpoint import OPTIMIZER_FILE, WEIGHTS_FILE, _assign, restore, save_checkpoint
    from hamtune.training.phases import PHASE_SCRATCH

    trained = _dense_pair()
    save_checkpoint(tmp_path, trained, TrialState(epoch=1), phase=PHASE_SCRATCH)
    restored = _dense_pair()
    _assign(tmp_path / WEIGHTS_FILE, list(reversed(restored.variables)), "model")
    _assign(tmp_path / OPTIMIZER_FILE, list(reversed(restored.optimizer.variables)), "optimizer")
    for mine, theirs in [*zip(trained.variables, restored.variables, strict=True),
                         *zip(trained.optimizer.variables, restored.optimizer.variables, strict=True)]:
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)

    renamed = _dense_pair(output="logits")
    before = [v.numpy().copy() for v in renamed.variables]
    with pytest.raises(HamtuneError, match=(
            r"weights\.npz does not fit this model: it has 4 variables, this one 4; only in the checkpoint: "
            r"out/kernel, out/bias; only here: logits/kernel, logits/bias\. It was written by another "
            r"configuration or Keras version")):
        restore(tmp_path, renamed, optimizer=False)
    for value, variable in zip(before, renamed.variables, strict=True):
        np.testing.assert_array_equal(value, variable.numpy())


@pytest.mark.slow
@pytest.mark.backbone
def test_a_mixed_precision_trial_restarts_from_its_checkpoint_with_the_loss_scale_intact(
        tmp_path: Path, hamtune_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mixed-precision trial killed after epoch 1 and restarted from its checkpoint.

    GPU trials train under `mixed_float16`, where Keras wraps Adam in a LossScaleOptimizer whose
    dynamic loss scale and step counter are state like Adam's moments. Keras runs the same policy
    on CPU, so this trial runs it here (the device set-up, which picks float32 without a GPU, is
    followed by the GPU's policy), from scratch with augmentation. A restarted
    trial has nothing but its checkpoint: the epoch-1 checkpoint is resumed in a freshly built
    model, and its epoch 2 must match the uninterrupted run's.

    Checked: the checkpoint holds the loss-scale state, already moved off its initial 2**15 by
    float16 overflows; after the restart the loss scale, step counter and every variable at
    epoch 2 equal the uninterrupted run's (to 1e-5), and so do the validation scores (macro F1
    exactly, loss to 1e-5).

    Sized for float16 on a CPU, which TensorFlow emulates at about 0.5 s per training image
    here (40x float32): the smallest synthetic set, 40 % of it in training, and 2 epochs (3 of
    training in all, against 5 before) keep it near two minutes.
    """
    import shutil

    import keras

    import hamtune.training.checkpoint as checkpoint
    import hamtune.training.trial as trial
    from hamtune.config import parse_sweep
    from hamtune.data.prepared import prepare_data
    from hamtune.training.device import configure

    def like_a_gpu(*args: Any) -> bool:
        used = configure(*args)
        keras.mixed_precision.set_global_policy("mixed_float16")
        return used

    monkeypatch.setattr(trial, "configure", like_a_gpu)
    sweep = parse_sweep({
        "name": "mixed", "data": {"dir": str(write_synthetic(tmp_path / "data", images=140, seed=3)), "image_size": 32,
                                  "cache_dir": str(hamtune_cache), "val_fraction": 0.3, "test_fraction": 0.3},
        "training": {"epochs": 2, "batch_size": 16, "patience": 2, "weights": "none", "augmentation": "flips",
                     "mixed_precision": True}})
    data = prepare_data(sweep.data)
    params = {"model": "densenet121", "learning_rate": 3e-3, "dropout": 0.2, "unfreeze_depth": 0,
              "class_weight_power": 0.5}

    class Keeping:
        """Keeps every epoch's row and a copy of its checkpoint."""

        wants_checkpoints = True

        def __init__(self, name: str) -> None:
            self.rows: list[dict[str, Any]] = []
            self.name = name

        def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            self.rows.append(metrics)
            shutil.copytree(checkpoint_dir, tmp_path / self.name / str(metrics["epoch"]))

    try:
        whole, restarted = Keeping("whole"), Keeping("restarted")
        trial.run_trial(params, sweep.training, data, whole, seed=11)
        keras.backend.clear_session()
        trial.run_trial(params, sweep.training, data, restarted, checkpoint_dir=tmp_path / "whole" / "1", seed=11)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    def saved(run: str, epoch: int, file: str) -> dict[str, np.ndarray]:
        with np.load(tmp_path / run / str(epoch) / file) as arrays:
            return {key: arrays[key] for key in arrays.files if key != checkpoint.ALL_KEYS}

    scale = ("loss_scale_optimizer/dynamic_scale", "loss_scale_optimizer/step_counter")
    first = saved("whole", 1, checkpoint.OPTIMIZER_FILE)
    assert float(first[scale[0]]) < 2 ** 15, "no float16 overflow: the loss scale never moved"
    for key in scale:
        assert saved("whole", 2, checkpoint.OPTIMIZER_FILE)[key] == saved("restarted", 2, checkpoint.OPTIMIZER_FILE)[key]
    assert [row["epoch"] for row in restarted.rows] == [2]
    for mine, theirs in zip(whole.rows[1:], restarted.rows, strict=True):
        assert mine["val_macro_f1"] == theirs["val_macro_f1"]
        assert theirs["val_loss"] == pytest.approx(mine["val_loss"], abs=1e-5)
    last_whole, last_restarted = saved("whole", 2, checkpoint.WEIGHTS_FILE), saved("restarted", 2, checkpoint.WEIGHTS_FILE)
    assert last_whole.keys() == last_restarted.keys()
    for key, value in last_whole.items():
        np.testing.assert_allclose(last_restarted[key], value, atol=1e-5, err_msg=key)
