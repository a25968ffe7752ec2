"""Warm trials: a worker builds and compiles a model once, and every later trial reuses it.

A trial's first epoch cost about 4x a steady one, nearly all of it TensorFlow tracing (or XLA
compiling) the training step, and Ray Tune's actor reuse alone does not help: the trial function
rebuilt and retraced the model. Here a process keeps one `TrialModel` per graph-shaping setting
(`ModelKey`: backbone, image size, weights, augmentation, backend, dtype policy), and everything
a trial changes is a value the compiled step reads, not a constant traced into it:

- the learning rate, its schedule and the weight decay are the optimizer's variables
  (`hamtune.training.optimizer`);
- the dropout rate is `TunableDropout`'s variable;
- class weights are per-sample weights, already data;
- the unfreezing depth decides which variables train, which a compiled step fixes: each
  (phase, depth) gets its own compiled step, kept for later trials with that depth (the last
  `MAX_FINE_TUNE_STEPS` depths); BatchNorm stays frozen in transfer mode exactly as before.

`TrialModel.start` puts the model in the state a freshly built one would have: every variable
(weights, BatchNorm statistics, the dropout and augmentation seed generators) takes the values
of a model built with the trial's seed, and each phase starts with a fresh optimizer (moments
and iteration count at their initial values) and fresh metrics (`fit` resets them each epoch).
A cold trial (`training.warm_trials: false`) runs the same code on a `TrialModel` of its own.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from hamtune.config import TrainingConfig
from hamtune.training.phases import PHASE_FINE_TUNE, PHASE_HEAD, Schedule

logger = logging.getLogger(__name__)

#: Compiled fine-tuning steps kept per model, one per unfreezing depth, the least recently used
#: dropped first: each holds a traced graph (or XLA executable) of the whole network.
MAX_FINE_TUNE_STEPS = 3
#: Starting points kept per model, by seed: one when trials share their start (the default),
#: a few when `training.seed_per_trial` gives each trial its own.
MAX_STARTS = 2


@dataclass(frozen=True)
class ModelKey:
    """What shapes a trial's graph: trials with equal keys can share a compiled model."""

    backbone: str
    image_size: int
    weights: str
    augmentation: str
    backend: str
    policy: str

    @classmethod
    def of(cls, params: dict[str, Any], training: TrainingConfig, image_size: int) -> ModelKey:
        """The key of a trial's model, in this process (its backend and dtype policy chosen)."""
        import keras

        model = str(params["model"])
        return cls(model, image_size, training.weights_for(model), training.augmentation_for(model),
                   keras.backend.backend(), keras.mixed_precision.global_policy().name)


@dataclass
class _Step:
    """One phase's compiled model (it shares every layer with the built one) and its optimizer's
    initial values."""

    model: Any
    fresh_optimizer: list[np.ndarray]


class TrialModel:
    """A built model, its starting points by seed and its compiled steps by (phase, depth).

    `model` is the network (predictors and checkpoints read its variables); `phase` returns the
    model to `fit` in a phase. From scratch and in the head-only phase that is `model` itself,
    compiled once; each fine-tuning depth compiles a functional copy sharing `model`'s layers,
    so switching depth never loses another depth's compiled step.
    """

    def __init__(self, key: ModelKey, seed: int, dropout: float) -> None:
        self.key = key
        self.model = build(key, seed, dropout)
        #: The compiled model of the current phase: what `fit`s, and whose optimizer a checkpoint holds.
        self.compiled: Any = None
        self.trials = 0
        self._predictor: Callable[[Any], np.ndarray] | None = None
        self._starts: OrderedDict[int, list[np.ndarray]] = OrderedDict({seed: _values(self.model.variables)})
        self._steps: OrderedDict[tuple[int, int], _Step] = OrderedDict()

    @property
    def warm(self) -> bool:
        """Whether the current trial is not the first this model serves."""
        return self.trials > 1

    def start(self, seed: int, dropout: float) -> None:
        """Reset every variable to a fresh build's with `seed`, and set the dropout rate."""
        from hamtune.training.models import DROPOUT_LAYER

        if seed not in self._starts:
            fresh = build(self.key, seed, dropout)
            self._starts[seed] = _values(fresh.variables)
            del fresh
            while len(self._starts) > MAX_STARTS:
                self._starts.popitem(last=False)
        self._starts.move_to_end(seed)
        for variable, value in zip(self.model.variables, self._starts[seed]):
            variable.assign(value)
        self.model.get_layer(DROPOUT_LAYER).set_rate(dropout)
        self.trials += 1

    def phase(self, phase: int, depth: int, schedule: Schedule) -> Any:
        """The compiled model of `phase`, its trainable set as the phase says, with a fresh
        optimizer stepping on `schedule`."""
        from hamtune.training.models import freeze_backbone, unfreeze
        from hamtune.training.optimizer import trial_adam

        if phase == PHASE_HEAD:
            freeze_backbone(self.model)
        elif phase == PHASE_FINE_TUNE:
            unfreeze(self.model, self.key.backbone, depth)
        key = (phase, depth if phase == PHASE_FINE_TUNE else 0)
        step = self._steps.get(key)
        if step is None:
            step = self._steps[key] = self._compile(phase, schedule.learning_rate)
            fine_tune = [k for k in self._steps if k[0] == PHASE_FINE_TUNE]
            if len(fine_tune) > MAX_FINE_TUNE_STEPS:
                del self._steps[fine_tune[0]]
        else:
            logger.debug("reusing the compiled step of phase %d, depth %d", *key)
        self._steps.move_to_end(key)
        optimizer = step.model.optimizer
        for variable, value in zip(optimizer.variables, step.fresh_optimizer):
            variable.assign(value)
        trial_adam(optimizer).set_schedule(schedule)
        self.compiled = step.model
        return step.model

    @contextmanager
    def evaluated(self, averaged: bool) -> Iterator[None]:
        """Within the block the model holds the weights to score and save: the moving average of
        the current phase's trained weights when `averaged`, else the trained weights."""
        from hamtune.training.optimizer import trial_adam

        if not averaged or self.compiled is None:
            yield
            return
        with trial_adam(self.compiled.optimizer).averaged_weights(self.compiled.trainable_variables):
            yield

    @property
    def predictor(self) -> Callable[[Any], np.ndarray]:
        """Class probabilities from the model's current variables (`make_predictor`), traced once."""
        from hamtune.training.inference import make_predictor

        if self._predictor is None:
            self._predictor = make_predictor(self.model)
        return self._predictor

    def _compile(self, phase: int, learning_rate: float) -> _Step:
        import keras

        model = self.model
        if phase == PHASE_FINE_TUNE:
            model = keras.Model(self.model.inputs, self.model.outputs, name=f"{self.model.name}_fine_tune")
        compile_model(model, learning_rate)
        optimizer = model.optimizer
        # Built now, within its own name scope as its first `apply` would build it, so that its
        # initial values can be kept and a checkpoint's variable paths stay the same.
        with keras.name_scope(optimizer.name, caller=optimizer):
            optimizer.build(model.trainable_variables)
        return _Step(model, _values(optimizer.variables))


_MODELS: dict[ModelKey, TrialModel] = {}


def trial_model_for(key: ModelKey, seed: int, dropout: float, warm: bool) -> TrialModel:
    """The model a trial trains, at its starting point: this process's own for `key` when `warm`,
    else a new one."""
    model = _MODELS.get(key) if warm else None
    if model is None:
        model = TrialModel(key, seed, dropout)
        if warm:
            _MODELS[key] = model
    model.start(seed, dropout)
    logger.info("%s model for trial %d on this worker", "warm" if model.warm else "new", model.trials)
    return model


def forget_models() -> None:
    """Drop this process's warm models (and with them their compiled steps)."""
    _MODELS.clear()


def compile_model(model: Any, learning_rate: float) -> None:
    """Compile for one training phase: a fresh `TrialAdam` at `learning_rate` (constant until
    `set_schedule`) and the weighted loss.

    Shared with the tests and benchmarks so they train exactly what a trial trains.
    """
    from hamtune.training.optimizer import TrialAdam

    model.compile(
        optimizer=TrialAdam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=[],
    )


def build(key: ModelKey, seed: int, dropout: float) -> Any:
    """A new model of `key`, its random initial values drawn from `seed`."""
    from hamtune.training.device import set_seed
    from hamtune.training.models import build_model

    set_seed(seed)
    return build_model(key.backbone, key.image_size, dropout, weights=key.weights, seed=seed,
                       augmentation=key.augmentation)


def _values(variables: list[Any]) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in variables]
