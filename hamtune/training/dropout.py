"""Dropout whose rate is a variable, so a warm trial changes it without a new trace.

`keras.layers.Dropout` keeps its rate as a Python float that the traced (or jitted) training
step bakes in as a constant: a worker reusing its compiled model for the next trial (see
`hamtune.training.warm`) would train every trial at the first trial's rate. This layer reads
the rate from a non-trainable variable instead; otherwise it computes what `Dropout` computes
(units kept with probability 1 - rate and scaled by its inverse, drawn from the layer's own seed
generator). It is registered, so `.keras` files save and load it without unsafe
deserialisation.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="hamtune")
class TunableDropout(keras.layers.Layer):
    """Dropout at `rate`, a variable that `set_rate` changes in a compiled model."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1), got {rate}")
        self.initial_rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.rate = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_rate), trainable=False,
            dtype="float32", name="rate",
        )
        self.supports_masking = True

    def set_rate(self, rate: float) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1), got {rate}")
        self.rate.assign(rate)

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        # Not `keras.random.dropout`: its Python tests of the rate (`if rate == 0.0`) need a
        # constant. A uniform draw below the keep probability keeps a unit, as `Dropout` does.
        keep = 1.0 - keras.ops.cast(self.rate, inputs.dtype)
        noise = keras.random.uniform(keras.ops.shape(inputs), dtype=inputs.dtype, seed=self.seed_generator)
        return keras.ops.where(noise < keep, inputs / keep, keras.ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.initial_rate, "seed": self.seed}
