"""The trial optimizer (`hamtune.training.optimizer`) and the schedule a phase gets
(`hamtune.training.trial.phase_schedule`), with hand-worked numbers.

That a warm worker's compiled step reads every setting (a reused step trains exactly as a new one
under another schedule, weight decay and scoring) is tested in tests/training/test_warm.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hamtune.config import parse_sweep
from hamtune.training.phases import PHASE_FINE_TUNE, PHASE_HEAD, PHASE_SCRATCH, Schedule, phase_epochs
from hamtune.training.trial import phase_schedule

PARAMS = {"model": "densenet121", "learning_rate": 0.01, "dropout": 0.3, "unfreeze_depth": 2,
          "class_weight_power": 1.0}


def test_schedule_factor_warms_up_then_follows_a_cosine_to_zero() -> None:
    from hamtune.training.optimizer import schedule_factor

    # Warm-up 2 steps: (s + 1) / 2; then cos over steps 2..8: (1 + cos(pi (s - 2) / 6)) / 2.
    expected = [0.5, 1.0, 1.0, 0.9330127, 0.75, 0.5, 0.25, 0.0669873, 0.0, 0.0]
    np.testing.assert_allclose([float(schedule_factor(step, 2, 8)) for step in range(10)], expected, atol=1e-6)
    assert [float(schedule_factor(step, 0, 0)) for step in (0, 1, 1000)] == [1.0, 1.0, 1.0]  # constant


def test_phase_schedule_spans_the_phase_in_steps() -> None:
    def training(**settings: Any) -> Any:
        return parse_sweep({"name": "s", "data": {"dir": "."}, "space": {"models": ["densenet121"]},
                            "training": {"epochs": 12, "warmup_epochs": 3, "batch_size": 32, **settings}}).training

    assert phase_epochs(PHASE_SCRATCH, 12, 3, 2) == 12
    assert (phase_epochs(PHASE_HEAD, 12, 3, 2), phase_epochs(PHASE_FINE_TUNE, 12, 3, 2)) == (3, 9)
    assert phase_epochs(PHASE_HEAD, 12, 3, 0) == 12  # depth 0: the head trains throughout
    # 100 images in batches of 32: 4 steps an epoch.
    assert phase_schedule(PARAMS, training(lr_schedule="constant", weight_decay=0.0), PHASE_HEAD, 100) == Schedule(0.01)
    cosine = training(lr_schedule="cosine", lr_warmup_epochs=1, weight_decay=0.05, fine_tune_lr_scale=0.1)
    assert phase_schedule(PARAMS, cosine, PHASE_HEAD, 100) == Schedule(0.01, 4, 12, 0.05)
    assert phase_schedule(PARAMS, cosine, PHASE_FINE_TUNE, 100) == Schedule(0.001, 4, 36, 0.05)
    assert phase_schedule(PARAMS, cosine, PHASE_SCRATCH, 100) == Schedule(0.01, 4, 48, 0.05)


def _decaying_model(weight_decay: float, warmup_steps: int = 0) -> Any:
    """A Dense layer fed zeros: its kernel's gradient is zero, so only weight decay moves it."""
    import keras

    from hamtune.training.warm import compile_model

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, kernel_initializer="ones", activation="softmax",
                                                                    name="dense")], name="decaying")
    compile_model(model, 0.1)
    model.optimizer.set_schedule(Schedule(0.1, warmup_steps, 0, weight_decay))
    return model


def test_weight_decay_is_decoupled_scaled_by_the_rate_and_spares_biases() -> None:
    x, y = np.zeros((4, 2), "float32"), np.array([0, 1, 2, 0])
    model = _decaying_model(0.5, warmup_steps=2)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    # Step 0 of a 2-step warm-up: rate 0.1 * 1/2, kernel 1 - 0.05 * 0.5.
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), 0.975, rtol=1e-6)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), 0.975 * 0.95, rtol=1e-6)  # full rate now

    flat = _decaying_model(0.0, warmup_steps=2)
    flat.fit(x, y, batch_size=4, epochs=2, verbose=0)
    np.testing.assert_array_equal(flat.layers[0].kernel.numpy(), 1.0)  # no decay: untouched
    # The bias's gradient does not depend on the kernel here: it moved, and exactly as without decay.
    assert np.all(model.layers[0].bias.numpy() != 0)
    np.testing.assert_array_equal(model.layers[0].bias.numpy(), flat.layers[0].bias.numpy())


def test_averaged_weights_are_swapped_in_for_scoring_and_carried_by_the_checkpoint(tmp_path: Path) -> None:
    from hamtune.training.checkpoint import TrialState, restore_weights, save_checkpoint

    x, y = np.zeros((4, 2), "float32"), np.array([0, 1, 2, 0])
    model = _decaying_model(0.5)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # kernel 0.95, then 0.9025
    kernel = model.layers[0].kernel
    np.testing.assert_allclose(kernel.numpy(), 0.9025, rtol=1e-6)  # `fit` did not write the average in
    average = 0.99 * 0.95 + 0.01 * 0.9025  # the first step's weights, then momentum 0.99
    with model.optimizer.averaged_weights(model.trainable_variables):
        np.testing.assert_allclose(kernel.numpy(), average, rtol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), 0.9025, rtol=1e-6)

    save_checkpoint(tmp_path, model, TrialState(epoch=2), PHASE_SCRATCH)
    for averaged, expected in ((False, 0.9025), (True, average)):
        fresh = _decaying_model(0.0)
        restore_weights(tmp_path, fresh, averaged=averaged)
        np.testing.assert_allclose(fresh.layers[0].kernel.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("setting, value, allowed", [
    ("lr_schedule", "linear", "one of constant, cosine, got 'linear'"),
    ("weight_decay", -0.1, "a float in [0, inf), got -0.1"),
    ("weight_averaging", "yes", "got 'yes'"),
])
def test_bad_stabiliser_settings_are_refused_by_name(setting: str, value: Any, allowed: str) -> None:
    from hamtune.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        parse_sweep({"name": "s", "data": {"dir": "."}, "space": {"models": ["densenet121"]},
                     "training": {setting: value}}, source="sweeps/x.yaml")
    assert f"training.{setting}" in str(error.value) and allowed in str(error.value), str(error.value)
