"""Class probabilities from a model: one traced (or jitted) inference function per model.

Shared by trials (validation after every epoch), refits, evaluation and `hamtune predict`, so
every score hamtune reports comes from the same computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

def make_predictor(model: Any) -> Callable[[Any], np.ndarray]:
    """Class probabilities of a dataset's images, from one inference function traced once.

    `model.predict` traces its function again after every `compile` (Keras resets it, and the
    trial recompiles at the phase boundary) and once more for the last, smaller batch; this
    function reads the variables as they are at each call, so one trace serves every epoch of
    both phases. Same computation as `predict` (`training=False`). Under TensorFlow it takes any
    batch size; under JAX, XLA compiles once per batch shape (the last, smaller batch once more).
    """
    import keras

    infer = _jax_inference(model) if keras.backend.backend() == "jax" else _tf_inference(model)

    def predict(dataset: Any) -> np.ndarray:
        return np.concatenate([np.asarray(infer(batch[0])) for batch in dataset])

    return predict


def _tf_inference(model: Any) -> Callable[[Any], Any]:
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.as_dtype(model.input.dtype))
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _jax_inference(model: Any) -> Callable[[Any], Any]:
    """`model(x, training=False)` as one jitted function of the variables' current values.

    The values are arguments, not constants baked in at trace time, and all of `model.variables`
    is passed whatever is trainable, so neither a training step nor the phase boundary's
    unfreezing retraces it.
    """
    import jax
    import keras

    @jax.jit
    def stateless(values: list[Any], x: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
            return model(x, training=False)

    return lambda x: stateless([variable.value for variable in model.variables], x)
