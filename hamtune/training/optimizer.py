"""The trial optimizer: Adam with a warm-up + cosine learning rate, decoupled weight decay and a
moving average of the weights, every setting a variable the compiled step reads.

A warm worker reuses one compiled training step for all its trials (`hamtune.training.warm`),
so nothing a trial or a sweep sets may be a constant traced into it. Keras offers each piece,
but as constants: a `LearningRateSchedule` replaces the learning-rate variable, `weight_decay`
is a Python float, and `use_ema` makes every `fit` end by writing the averaged weights over the
trained ones (`finalize_variable_values`), which would restart each of hamtune's one-epoch `fit`
calls from the average. Here:

- `learning_rate` stays the optimizer's variable and holds the peak rate; the rate a step uses is
  `schedule_factor(iterations, warmup_steps, decay_steps)` times it: a linear warm-up over
  `warmup_steps`, then a cosine decay to zero at `decay_steps` (0 = none: a constant rate, the
  recipe's). Keras reads the rate through `_get_current_learning_rate` (checked in keras 3.15).
- `weight_decay` is a variable; Keras applies it decoupled, as AdamW does (`w -= lr * wd * w`,
  before the Adam step), skipping biases and BatchNorm's scale and offset. At 0 nothing changes.
- The moving average (`ema_momentum` 0.99: about the last 100 steps) is always tracked, and
  `averaged_weights` swaps it in for evaluation and back; `fit` never writes it into the weights.

The three settings are optimizer variables, so they are part of its state under JAX's stateless
step, and of its checkpoint: a resumed trial continues on the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np

from hamtune.training.phases import Schedule

#: The moving average's momentum: each step's weights enter it with weight 0.01.
EMA_MOMENTUM = 0.99
#: Variables never decayed (matched by name): biases and BatchNorm's scale and offset.
NOT_DECAYED = ("bias", "gamma", "beta")


def schedule_factor(step: Any, warmup_steps: Any, decay_steps: Any) -> Any:
    """The share of the peak learning rate at 0-based `step`: `(step + 1) / warmup_steps` while
    warming up, then `(1 + cos(pi * progress)) / 2` with progress from the warm-up's end to
    `decay_steps`; 1 throughout when `decay_steps` is 0 and there is no warm-up."""
    ops = keras.ops
    step, warmup, total = (ops.cast(value, "float32") for value in (step, warmup_steps, decay_steps))
    warming = ops.minimum((step + 1.0) / ops.maximum(warmup, 1.0), 1.0)
    progress = ops.clip((step - warmup) / ops.maximum(total - warmup, 1.0), 0.0, 1.0)
    cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
    after = ops.where(total > 0.0, cosine, 1.0)
    return ops.where(step < warmup, warming, after)


@keras.saving.register_keras_serializable(package="hamtune")
class TrialAdam(keras.optimizers.Adam):
    """Adam whose schedule, weight decay and weight averaging a warm trial can change."""

    def __init__(self, learning_rate: float = 0.001, warmup_steps: int = 0, decay_steps: int = 0,
                 weight_decay: float | None = 0.0, **kwargs: Any) -> None:
        kwargs.update(use_ema=True, ema_momentum=EMA_MOMENTUM)
        super().__init__(learning_rate=learning_rate, **kwargs)
        with keras.name_scope(self.name, caller=self):
            self.warmup_steps = self._setting(warmup_steps, "warmup_steps")
            self.decay_steps = self._setting(decay_steps, "decay_steps")
            self.weight_decay = self._setting(weight_decay or 0.0, "weight_decay")
        self.exclude_from_weight_decay(var_names=list(NOT_DECAYED))

    @staticmethod
    def _setting(value: float, name: str) -> Any:
        # Assigned as attributes, Keras tracks them as the optimizer's variables.
        return keras.Variable(float(value), name=name, dtype="float32", trainable=False,
                              aggregation="only_first_replica")

    def set_schedule(self, schedule: Schedule) -> None:
        """Set what the next steps use: the peak rate, the schedule's length and the decay."""
        if min(schedule.warmup_steps, schedule.decay_steps, schedule.weight_decay) < 0:
            raise ValueError(f"negative schedule setting: {schedule}")
        self.learning_rate = schedule.learning_rate
        self.warmup_steps.assign(float(schedule.warmup_steps))
        self.decay_steps.assign(float(schedule.decay_steps))
        self.weight_decay.assign(float(schedule.weight_decay))

    def _get_current_learning_rate(self) -> Any:
        return self._learning_rate * schedule_factor(self.iterations, self.warmup_steps, self.decay_steps)

    def finalize_variable_values(self, var_list: Any) -> None:
        """Leave the trained weights as they are at the end of `fit` (see `averaged_weights`)."""

    @contextmanager
    def averaged_weights(self, var_list: list[Any]) -> Iterator[None]:
        """Within the block, `var_list` (the trainable variables the optimizer was built for)
        hold their moving averages; after it, their trained values again."""
        trained = [np.array(variable.numpy()) for variable in var_list]
        self._overwrite_model_variables_with_average_value(var_list)
        try:
            yield
        finally:
            for variable, value in zip(var_list, trained):
                variable.assign(value)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for name in ("warmup_steps", "decay_steps", "weight_decay"):
            config[name] = float(getattr(self, name).numpy())
        for name in ("use_ema", "ema_momentum"):
            config.pop(name)
        return config


def trial_adam(optimizer: Any) -> TrialAdam:
    """The `TrialAdam` of a compiled model's optimizer (inside a mixed-precision loss scaler)."""
    return getattr(optimizer, "inner_optimizer", optimizer)
