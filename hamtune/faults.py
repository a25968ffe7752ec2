"""Deliberate faults for hamtune's reliability tests; inert unless `HAMTUNE_FAULTS` is set.

The fault tests (tests/sweep/test_faults.py) prove that a sweep survives what long runs meet — a trial
that runs out of memory, a loss that turns NaN, a full disk — by injecting each fault at a fixed
point of the real code and checking the result tables afterwards. `inject(point, ...)` is that
point: with the variable unset (every real run) it returns at once and changes nothing. The driver
passes the variable on to Ray workers, so trials on any node see the same faults.

`HAMTUNE_FAULTS` is a JSON list of faults, e.g.
`[{"at": "epoch", "when": {"dropout": 0.1, "epoch": 2}, "fault": "oom"}]`: at the point named
`at`, when every `when` key equals the value the point was called with, apply `fault`:

- `oom`: raise TensorFlow's ResourceExhaustedError (what a GPU out-of-memory raises);
- `memory`: raise MemoryError (a host out-of-memory inside Python);
- `nan`: set the model's trainable weights to NaN, so the next `fit` yields a genuine NaN loss;
- `enospc`: raise OSError(ENOSPC), a full disk.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

FAULTS_ENV = "HAMTUNE_FAULTS"
FAULTS = ("oom", "memory", "nan", "enospc")


def inject(point: str, model: Any = None, /, **context: Any) -> None:
    """Apply the faults configured for `point` whose `when` matches `context` (no-op when unset).

    `model` is the Keras model a `nan` fault poisons; `context` (epoch, hyperparameters, file
    name...) is what `when` is matched against.
    """
    raw = os.environ.get(FAULTS_ENV)
    if not raw:
        return
    for fault in json.loads(raw):
        when = fault.get("when", {})
        if fault["at"] == point and all(context.get(key) == value for key, value in when.items()):
            where = ", ".join(f"{key}={context[key]}" for key in sorted(when))
            _apply(fault["fault"], model, f"injected by {FAULTS_ENV} at {point} ({where})")


def _apply(fault: str, model: Any, message: str) -> None:
    if fault == "oom":
        import tensorflow as tf

        raise tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating tensor ({message})")
    if fault == "memory":
        raise MemoryError(message)
    if fault == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({message})")
    if fault == "nan":
        for variable in model.trainable_variables:
            variable.assign(variable * float("nan"))
        return
    raise ValueError(f"{FAULTS_ENV}: fault must be one of {', '.join(FAULTS)}, got {fault!r}")
