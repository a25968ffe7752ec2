"""What differs by Keras backend, measured in a process of its own: `python -m tests.support.backend_probe BACKEND`.

Keras fixes its backend at its first import (the test process runs TensorFlow), so
tests/training/test_jax_backend.py runs this once per backend and compares the JSON it prints: the
checkpoint keys of a trial's model and optimizer, and what `make_dataset` and `make_predictor`
deliver on a small model.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from hamtune.training.device import configure, set_seed
from hamtune.training.checkpoint import checkpoint_keys
from hamtune.training.inference import make_predictor
from hamtune.training.warm import compile_model


def trial_model() -> object:
    """A from-scratch DenseNet121 trial's model (full augmentation) with its Adam built."""
    from hamtune.training.models import build_model

    model = build_model("densenet121", 32, 0.2, weights="none", seed=0, augmentation="full")
    compile_model(model, 1e-3)
    model.optimizer.build(model.trainable_variables)
    return model


def trial_keys(model: object) -> dict[str, list[str]]:
    """Checkpoint keys of the trial's model and Adam, as a checkpoint lists them."""
    return {"model": checkpoint_keys(model.variables), "optimizer": checkpoint_keys(model.optimizer.variables)}


def not_jit_safe(model: object) -> dict[str, list[str]]:
    """The layers Keras would not jit, as built and once saved and loaded: `model.predict` runs a
    model with any of them op by op."""
    import tempfile
    from pathlib import Path

    from hamtune.training.models import _nested_layers, load_model

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model.keras")
        loaded = load_model(Path(tmp) / "model.keras", compile=False)
    return {name: sorted(layer.name for layer in _nested_layers(m) if not layer.supports_jit)
            for name, m in (("built", model), ("loaded", loaded))}


def pipeline() -> dict[str, object]:
    """Two shuffled epochs and one in order from `make_dataset`, and the predictor against `predict`."""
    import keras

    from hamtune.data.pipeline import make_dataset

    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    positions, labels = np.arange(3, 13), np.arange(10) % 7
    shuffled = make_dataset(images, positions, labels, np.ones(10), batch_size=4, shuffle=True, seed=1)
    epochs = []
    for _ in range(2):  # as `fit` sees it: an epoch, then the next one
        batches = [[np.asarray(part) for part in batch] for batch in shuffled]
        epochs.append([int(np.flatnonzero((images == x).all(axis=(1, 2, 3)))[0]) for b in batches for x in b[0]])
        if hasattr(shuffled, "on_epoch_end"):
            shuffled.on_epoch_end()
    ordered = make_dataset(images, positions, labels, batch_size=4)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    compile_model(model, 1e-2)
    model.fit(shuffled, epochs=1, verbose=0)
    first = [np.asarray(part) for part in next(iter(ordered))]
    return {
        "batch": [[str(part.dtype), list(part.shape)] for part in first],
        "shuffled_epochs": epochs,
        "predictor_matches_predict": bool(np.allclose(make_predictor(model)(ordered), model.predict(ordered, verbose=0),
                                                      atol=1e-6)),
        "dataset": type(ordered).__name__,
    }


if __name__ == "__main__":
    configure(sys.argv[1], cpus=1, use_gpu=False, mixed_precision=False)
    set_seed(0)
    model = trial_model()
    print(json.dumps({"keys": trial_keys(model), "not_jit_safe": not_jit_safe(model), "pipeline": pipeline(),
                      "tensorflow_imported": "tensorflow" in sys.modules}))
