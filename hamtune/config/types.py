"""The typed, frozen objects a sweep file becomes, and the vocabulary of their values.

Everything downstream reads a `SweepConfig`; nothing here validates (that is `parsing`, against
`schema`), so a config object is only ever built from a file that passed every check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Training modes, decided per model by its weights: "none" trains from scratch, anything else fine-tunes.
SCRATCH = "scratch"
TRANSFER = "transfer"
#: `training.augmentation`: what the in-graph augmentation does ("auto" picks per mode, see `augmentation_for`).
AUGMENTATIONS: tuple[str, ...] = ("auto", "none", "flips", "full")
#: What "auto" means per mode. From scratch at small sizes and short budgets the full set (rotation,
#: zoom, brightness, contrast) slowed learning more than it regularised on the dev set; flips cost
#: nothing and dermoscopy has no canonical orientation. Transfer keeps the notebook's full set.
AUTO_AUGMENTATION: dict[str, str] = {SCRATCH: "flips", TRANSFER: "full"}
#: `training.backend`: the Keras backend each trial process runs on (the driver never imports it).
#: TensorFlow is the default stack; JAX runs each training step as one XLA program, and runs on
#: GPU machines that have JAX but no TensorFlow.
BACKENDS: tuple[str, ...] = ("tensorflow", "jax")
#: `training.lr_schedule`: the peak rate throughout, or a linear warm-up then a cosine decay to zero.
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
#: `training.mixed_precision` on a GPU: true means float16 (with loss scaling), as before
#: bfloat16 existed here; bfloat16 needs no loss scaling and suits Ampere/Hopper-class GPUs.
PRECISION_POLICIES: dict[bool | str, str] = {
    True: "mixed_float16", False: "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16",
}
#: `search.sampler`: Optuna's TPE, or uniform random sampling as a baseline.
SAMPLERS: tuple[str, ...] = ("tpe", "random")


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int


@dataclass(frozen=True)
class SyntheticConfig:
    images: int
    seed: int


@dataclass(frozen=True)
class DataConfig:
    dir: str | None  # absolute local path or URI; None means synthetic data
    format: str
    image_size: int
    val_fraction: float
    test_fraction: float
    split_seed: int
    cache_dir: str | None  # None: the cache module's default
    synthetic: SyntheticConfig


@dataclass(frozen=True)
class SpaceConfig:
    models: tuple[str, ...]
    learning_rate: FloatRange
    dropout: FloatRange
    class_weight_power: FloatRange
    unfreeze_depth: dict[str, IntRange]  # one range per transfer-mode model; scratch models have none


@dataclass(frozen=True)
class TrialPoint:
    """One full set of trial parameters (a `points_to_evaluate` entry)."""

    model: str
    learning_rate: float
    dropout: float
    class_weight_power: float
    unfreeze_depth: int | None  # None for a model trained from scratch (every block trains)


@dataclass(frozen=True)
class SearchConfig:
    seed: int
    trials: int
    max_concurrent: int
    points_to_evaluate: tuple[TrialPoint, ...]
    sampler: str = "tpe"  # "tpe" (hamtune's search) or "random" (a baseline to compare it with)
    storage: str | None = None  # an Optuna storage URL; None: a journal file in the experiment
    warm_start: tuple[str, ...] = ()  # earlier experiments (or their trials.parquet) seeding the study
    warm_start_any_data: bool = False  # also from sweeps on other data, image size or training mode


@dataclass(frozen=True)
class SchedulerConfig:
    type: str  # "asha" or "none"
    grace_period: int  # resolved: the first fine-tuning epoch when the file leaves it null
    max_epochs: int  # resolved: training.epochs when the file leaves it null
    reduction_factor: float


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    warmup_epochs: int
    batch_size: int
    patience: int
    fine_tune_lr_scale: float
    #: "imagenet", "none" or an absolute path to an existing weights file: one for every model,
    #: or a mapping with one per model (a local file holds one backbone's weights).
    weights: str | dict[str, str]
    mixed_precision: bool | str
    augmentation: str = "auto"
    backend: str = "tensorflow"
    #: Reuse a worker's built and compiled model for its next trial (`hamtune.training.warm`).
    warm_trials: bool = True
    #: Give each trial its own starting weights and batch order (else one per backbone).
    seed_per_trial: bool = False
    #: "constant", or "cosine": `lr_warmup_epochs` of linear warm-up, then a cosine decay to zero
    #: at the phase's last epoch (`hamtune.training.optimizer`).
    lr_schedule: str = "cosine"
    lr_warmup_epochs: int = 1
    #: Decoupled weight decay (AdamW's), times the learning rate each step; 0 = plain Adam.
    weight_decay: float = 0.05
    #: Score (and export) the moving average of the weights instead of the last step's.
    weight_averaging: bool = False

    def weights_for(self, model: str) -> str:
        """The weights setting of one model's backbone."""
        return weights_of(self.weights, model)

    def mode_for(self, model: str) -> str:
        """`SCRATCH` when the model has no weights to start from, else `TRANSFER`."""
        return SCRATCH if self.weights_for(model) == "none" else TRANSFER

    def shown_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's hyperparameters as tables, reports and model cards show them (`shown_params`)."""
        return shown_params(params, self.mode_for(params["model"]))

    def augmentation_for(self, model: str) -> str:
        """The augmentation a trial of `model` trains with ("auto" resolved by its mode)."""
        if self.augmentation == "auto":
            return AUTO_AUGMENTATION[self.mode_for(model)]
        return self.augmentation

    @property
    def gpu_policy(self) -> str:
        """The Keras dtype policy a trial on a GPU trains with (CPU trials train in float32)."""
        return PRECISION_POLICIES[self.mixed_precision]


def shown_params(params: Mapping[str, Any], mode: str | None) -> dict[str, Any]:
    """`params` as shown to a user: no unfreeze depth for a model trained from scratch (`mode`
    SCRATCH), where every block trains and the depth does not apply. Training still reads the
    full depth (`hamtune.evaluation.selection.trial_params` puts it back)."""
    return {**params, "unfreeze_depth": None} if mode == SCRATCH else dict(params)


def weights_of(weights: str | dict[str, str], model: str) -> str:
    """One model's entry of a `training.weights` setting (shared, or one per model)."""
    return weights if isinstance(weights, str) else weights[model]


@dataclass(frozen=True)
class ModelResources:
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: float
    gpus_per_trial: float
    per_model: dict[str, ModelResources]  # fully resolved; models without an entry use the defaults

    def for_model(self, name: str) -> ModelResources:
        """The resources one trial of `name` asks Ray for."""
        return self.per_model.get(name, ModelResources(self.cpus_per_trial, self.gpus_per_trial))


@dataclass(frozen=True)
class FailuresConfig:
    max_retries: int


@dataclass(frozen=True)
class TrackingConfig:
    mlflow: str | None = None  # an MLflow tracking URI every trial is logged to


@dataclass(frozen=True)
class SweepConfig:
    name: str
    data: DataConfig
    space: SpaceConfig
    search: SearchConfig
    scheduler: SchedulerConfig
    training: TrainingConfig
    resources: ResourcesConfig
    storage: str  # absolute local path or URI
    failures: FailuresConfig
    tracking: TrackingConfig
    source: str  # the sweep file's path, or "<dict>"
    text: str  # the original YAML text, kept with the experiment for provenance


