"""Sweep files: YAML in, typed frozen config objects out, validated once at load.

Constraints are declared as data (`_schema()`: one `Field` per key) and every violation is
reported in one shape, `<file>: <dotted.key> must be <what is allowed>, got <value>`, all
errors at once, so a user fixes a sweep file in one pass instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hamtune import study
from hamtune.constraints import (
    Field,
    GpuCount,
    INVALID,
    Interval,
    Later,
    Location,
    Nullable,
    OneOf,
    REQUIRED,
    Text,
)
from hamtune.errors import ConfigError

#: What one model's `training.weights` may be.
WEIGHTS_RULE = "'imagenet', 'none' or the path of an existing weights file"
#: The float hyperparameters of `SpaceConfig` and `TrialPoint` (each a `FloatRange` in the space).
FLOAT_PARAMETERS: tuple[str, ...] = ("learning_rate", "dropout", "class_weight_power")
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
#: `training.mixed_precision` on a GPU: true means float16 (with loss scaling), as before
#: bfloat16 existed here; bfloat16 needs no loss scaling and suits Ampere/Hopper-class GPUs.
PRECISION_POLICIES: dict[bool | str, str] = {
    True: "mixed_float16", False: "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16",
}
#: `search.sampler`: Optuna's TPE, or uniform random sampling as a baseline.
SAMPLERS: tuple[str, ...] = ("tpe", "random")
#: `search.storage`: where the Optuna study lives when not in the default journal file.
STUDY_URL_RULE = "an Optuna storage URL (sqlite:///FILE, postgresql://USER@HOST/DB or mysql://USER@HOST/DB)"
#: `tracking.mlflow`: where MLflow keeps runs (its file store needs MLFLOW_ALLOW_FILE_STORE since MLflow 3).
MLFLOW_RULE = "an MLflow tracking URI (sqlite:///FILE for a local store, http(s)://HOST:PORT for a server)"
#: `with_overrides` keywords (the CLI's flags) and the sweep key each one replaces.
OVERRIDES: dict[str, str] = {"name": "name", "data_dir": "data.dir", "storage": "storage", "trials": "search.trials"}


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

    def weights_for(self, model: str) -> str:
        """The weights setting of one model's backbone."""
        return _weights_of(self.weights, model)

    def mode_for(self, model: str) -> str:
        """`SCRATCH` when the model has no weights to start from, else `TRANSFER`."""
        return SCRATCH if self.weights_for(model) == "none" else TRANSFER

    def augmentation_for(self, model: str) -> str:
        """The augmentation a trial of `model` trains with ("auto" resolved by its mode)."""
        if self.augmentation == "auto":
            return AUTO_AUGMENTATION[self.mode_for(model)]
        return self.augmentation

    @property
    def gpu_policy(self) -> str:
        """The Keras dtype policy a trial on a GPU trains with (CPU trials train in float32)."""
        return PRECISION_POLICIES[self.mixed_precision]


def _weights_of(weights: str | dict[str, str], model: str) -> str:
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


SEED = Interval(int, 0, 2**32 - 1)  # numpy's seed range
#: `search.seed`: each trial trains with it plus an offset below 10_000 (`hamtune.trainable.trial_seed`),
#: which must stay in numpy's range: (2**31 - 1) + 9_999 < 2**32 - 1.
SEARCH_SEED = Interval(int, 0, 2**31 - 1)
#: `data.image_size`: HAM10000's images are 600x450, so a larger size only upsamples them, and the
#: cache holds size**2 * 3 bytes per image (3 MiB at 1024, 31 GB for HAM10000): far above is a typo.
IMAGE_SIZE = Interval(int, 32, 1024)
POSITIVE_INT = Interval(int, 1, None)
COUNT = Interval(int, 0, None)
FRACTION = Interval(float, 0, 1, "neither")
CPUS = Interval(float, 0, None, "neither")
BOOL = OneOf((True, False))
DEPTH_RANGE = {"low": Field(0, COUNT), "high": Field(REQUIRED, COUNT)}
SCHEDULER_NONE = "none"


def _float_range(low: float, high: float, bound: Interval, log: bool = False) -> dict[str, Field]:
    return {"low": Field(low, bound), "high": Field(high, bound), "log": Field(log, BOOL)}


def _schema(models: tuple[str, ...]) -> dict[str, Any]:
    """Every key of a sweep file: its default and what it may be (nested dicts are sections)."""
    return {
        "name": Field(REQUIRED, Text(r"(?!\.+$)[A-Za-z0-9_.-]+", "a name of letters, digits, '_', '.' and '-'")),
        "data": {
            "dir": Field(None, Nullable(Location())),
            "format": Field("auto", OneOf(("auto", "kaggle", "isic2018"))),
            "image_size": Field(224, IMAGE_SIZE),
            "val_fraction": Field(0.15, FRACTION),
            "test_fraction": Field(0.15, FRACTION),
            "split_seed": Field(0, SEED),
            "cache_dir": Field(None, Nullable(Location(schemes=(), directory=True))),
            "synthetic": {"images": Field(1000, POSITIVE_INT), "seed": Field(0, SEED)},
        },
        "space": {
            "models": Field(list(models), Later("a non-empty list of distinct models")),
            "learning_rate": _float_range(1.0e-5, 1.0e-2, Interval(float, 0, None, "neither"), log=True),
            "dropout": _float_range(0.0, 0.5, Interval(float, 0, 1, "left")),
            "class_weight_power": _float_range(0.0, 1.0, Interval(float, 0, None)),
            "unfreeze_depth": Field(None, Later("a mapping of each model in space.models to {low, high}")),
        },
        "search": {
            "seed": Field(0, SEARCH_SEED),
            "trials": Field(64, POSITIVE_INT),
            "max_concurrent": Field(4, POSITIVE_INT),
            "points_to_evaluate": Field([], Later("a list of {model, learning_rate, dropout, ...} mappings")),
            "sampler": Field("tpe", OneOf(SAMPLERS)),
            "storage": Field(None, Nullable(Text(study.URL_PATTERN, STUDY_URL_RULE))),
            "warm_start": Field([], Later("a list of experiment directories or trials.parquet files")),
            "warm_start_any_data": Field(False, BOOL),
        },
        "scheduler": {
            "type": Field("asha", OneOf(("asha", SCHEDULER_NONE))),
            "grace_period": Field(None, Nullable(POSITIVE_INT)),
            "max_epochs": Field(None, Nullable(POSITIVE_INT)),
            "reduction_factor": Field(2.0, Interval(float, 1, None, "neither")),
        },
        "training": {
            "epochs": Field(20, POSITIVE_INT),
            "warmup_epochs": Field(3, COUNT),
            "batch_size": Field(32, POSITIVE_INT),
            "patience": Field(5, POSITIVE_INT),
            "fine_tune_lr_scale": Field(0.1, Interval(float, 0, 1, "right")),
            "weights": Field("imagenet", Later(f"{WEIGHTS_RULE}, or a mapping of each model in space.models to one")),
            "mixed_precision": Field(True, OneOf(tuple(PRECISION_POLICIES))),
            "augmentation": Field("auto", OneOf(AUGMENTATIONS)),
            "backend": Field("tensorflow", OneOf(BACKENDS)),
        },
        "resources": {
            "cpus_per_trial": Field(2.0, CPUS),
            "gpus_per_trial": Field(0.0, GpuCount()),
            "per_model": Field({}, Later("a mapping of models in space.models to {cpus, gpus}")),
        },
        "storage": Field("~/hamtune-runs", Location(directory=True)),
        "failures": {"max_retries": Field(2, COUNT)},
        "tracking": {"mlflow": Field(None, Nullable(Text(r"\S+", MLFLOW_RULE)))},
    }


# --- reading: collect every error, then build the objects ---------------------------------


class _Reader:
    """Checks raw values against `Field`s, collecting one message per problem."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, key: str, rule: Any, value: Any, hint: str = "") -> None:
        self.errors.append(f"{key} must be {rule}, got {value!r}{hint}")

    def check(self, ok: bool, key: str, rule: str, value: Any) -> None:
        if not ok:
            self.fail(key, rule, value)

    def unknown(self, value: Mapping, allowed: list[str], where: str) -> None:
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                guess = f"; did you mean '{close[0]}'?" if close else ""
                place = f"in {where}" if where else "at the top level"
                self.errors.append(f"unknown key {key!r} {place} (allowed: {', '.join(sorted(allowed))}){guess}")

    def section(self, value: Any, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The keys of `spec` read from `value` (defaults filled in); `INVALID` where a check failed."""
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            self.fail(where, "a mapping or 'none'" if where == "scheduler" else "a mapping", value)
            return _all_invalid(spec)
        self.unknown(value, list(spec), where)
        out = {}
        for name, item in spec.items():
            key = f"{where}.{name}" if where else name
            if isinstance(item, Field):
                out[name] = self.field(value, name, item, key)
            else:
                out[name] = self.section(value.get(name), item, key)
        return out

    def field(self, mapping: Mapping, name: str, field: Field, key: str) -> Any:
        if name not in mapping:
            if field.default is REQUIRED:
                self.errors.append(f"{key} is missing; it must be {field.constraint}")
                return INVALID
            return field.constraint.clean(field.default)
        try:
            return field.constraint.clean(mapping[name])
        except ValueError as error:
            self.fail(key, field.constraint, mapping[name], str(error))
            return INVALID


def _all_invalid(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {name: INVALID if isinstance(item, Field) else _all_invalid(item) for name, item in spec.items()}


def _valid(*values: Any) -> bool:
    return all(value is not INVALID for value in values)


def _backbones() -> tuple[tuple[str, ...], Callable[[str], int]]:
    """The model registry, read at validation time so its block counts are the only copy."""
    from hamtune.models import BACKBONES, max_unfreeze_depth

    return tuple(BACKBONES), max_unfreeze_depth


def _read_models(reader: _Reader, value: Any, known: tuple[str, ...]) -> Any:
    if not _valid(value):  # its section was not a mapping, already reported
        return INVALID
    rule = f"a non-empty list of distinct models from {', '.join(known)}"
    if not isinstance(value, list) or not value:
        reader.fail("space.models", rule, value)
        return INVALID
    ok = True
    for i, model in enumerate(value):
        if not isinstance(model, str) or model not in known:
            reader.fail(f"space.models[{i}]", OneOf(known), model)
            ok = False
        elif model in value[:i]:
            reader.fail(f"space.models[{i}]", "a model not listed before", model)
            ok = False
    return tuple(value) if ok else INVALID


def _read_warm_start(reader: _Reader, value: Any) -> Any:
    """Earlier experiments as absolute paths or URIs (each is read, and checked, when the sweep starts)."""
    if not _valid(value):
        return INVALID
    if not isinstance(value, list):
        reader.fail("search.warm_start", "a list of experiment directories or trials.parquet files", value)
        return INVALID
    found = [reader.field(dict(enumerate(value)), i, Field(REQUIRED, Location()), f"search.warm_start[{i}]")
             for i in range(len(value))]
    return tuple(found) if _valid(*found) else INVALID


def _read_float_range(reader: _Reader, raw: dict[str, Any], key: str) -> Any:
    low, high, log = raw["low"], raw["high"], raw["log"]
    if not _valid(low, high, log):
        return INVALID
    reader.check(low < high, f"{key}.low", f"< {key}.high ({high})", low)
    reader.check(not log or low > 0, f"{key}.low", f"> 0 when {key}.log is true", low)
    return FloatRange(low, high, log) if low < high and (not log or low > 0) else INVALID


#: Default unfreeze ranges' upper ends: the top blocks worth tuning (block counts live in hamtune.models).
_DEFAULT_UNFREEZE: dict[str, int] = {"convnext_small": 9, "densenet121": 16}


def _read_unfreeze(reader: _Reader, value: Any, models: tuple[str, ...], scratch: frozenset[str],
                   max_depth: Callable[[str], int]) -> Any:
    """One `IntRange` per transfer-mode model: the default ranges when the key is absent.

    A model trained from scratch trains every block from the first epoch, so a depth range for
    it would be silently meaningless: it is refused, naming the weights setting that decides it.
    """
    transfer = tuple(m for m in models if m not in scratch)
    if value is None:
        value = {m: {"low": 0, "high": high} for m, high in _DEFAULT_UNFREEZE.items() if m in transfer}
    if not isinstance(value, Mapping):
        reader.fail("space.unfreeze_depth", "a mapping of each model in space.models to {low, high}", value)
        return INVALID
    reader.unknown(value, list(models), "space.unfreeze_depth")
    ranges = {}
    for model in models:
        key = f"space.unfreeze_depth.{model}"
        if model in scratch:
            if model in value:
                reader.errors.append(_SCRATCH_DEPTH.format(key=key, model=model))
            continue
        if model not in value:
            reader.errors.append(f"{key} is missing; every transfer-mode model in space.models needs a {{low, high}} range")
            continue
        raw = reader.section(value[model], DEPTH_RANGE, key)
        low, high = raw["low"], raw["high"]
        if not _valid(low, high):
            continue
        blocks = max_depth(model)
        reader.check(high <= blocks, f"{key}.high", f"<= {blocks} ({model} has {blocks} blocks)", high)
        reader.check(low <= high, f"{key}.low", f"<= {key}.high ({high})", low)
        if low <= high <= blocks:
            ranges[model] = IntRange(low, high)
    return ranges if len(ranges) == len(transfer) else INVALID


_SCRATCH_DEPTH = (
    "{key} does not apply: training.weights is 'none' for {model}, so it trains from scratch "
    "and every block trains from the first epoch; remove {key}, or give {model} weights to fine-tune"
)


def _read_points(reader: _Reader, value: Any, space: SpaceConfig | None) -> Any:
    if not _valid(value):
        return INVALID
    if not isinstance(value, list):
        reader.fail("search.points_to_evaluate", "a list of {model, learning_rate, ...} mappings", value)
        return INVALID
    if space is None:  # the space is invalid: its errors are already reported
        return INVALID
    spec = {
        "model": Field(REQUIRED, OneOf(space.models)),
        **{p: Field(REQUIRED, Interval(float, *_bounds(getattr(space, p)))) for p in FLOAT_PARAMETERS},
        "unfreeze_depth": Field(None, Nullable(COUNT)),
    }
    points = []
    for i, entry in enumerate(value):
        key = f"search.points_to_evaluate[{i}]"
        raw = reader.section(entry, spec, key)
        if not _valid(*raw.values()):
            continue
        depth = space.unfreeze_depth.get(raw["model"])
        if depth is None:  # trained from scratch
            if raw["unfreeze_depth"] is not None:
                reader.errors.append(_SCRATCH_DEPTH.format(key=f"{key}.unfreeze_depth", model=raw["model"]))
        elif raw["unfreeze_depth"] is None:
            reader.errors.append(f"{key}.unfreeze_depth is missing; it must be {Interval(int, depth.low, depth.high)} "
                                 f"for {raw['model']}")
        else:
            rule = Interval(int, depth.low, depth.high)
            ok = depth.low <= raw["unfreeze_depth"] <= depth.high
            reader.check(ok, f"{key}.unfreeze_depth", f"{rule} for {raw['model']}", raw["unfreeze_depth"])
        points.append(TrialPoint(**raw))
    return tuple(points)  # incomplete only when errors were reported, and then nothing is built


def _bounds(bounds: FloatRange) -> tuple[float, float]:
    return bounds.low, bounds.high


def _read_per_model(reader: _Reader, value: Any, models: Any, cpus: Any, gpus: Any) -> Any:
    if not _valid(value):
        return INVALID
    if not isinstance(value, Mapping):
        reader.fail("resources.per_model", "a mapping of models in space.models to {cpus, gpus}", value)
        return INVALID
    if not _valid(models, cpus, gpus):
        return INVALID
    reader.unknown(value, list(models), "resources.per_model")
    spec = {"cpus": Field(cpus, CPUS), "gpus": Field(gpus, GpuCount())}
    out = {}
    for model in value:
        raw = reader.section(value[model], spec, f"resources.per_model.{model}")
        if model in models and _valid(*raw.values()):
            out[model] = ModelResources(**raw)
    return out


def _read_weights(reader: _Reader, value: Any, models: Any, source: str) -> Any:
    """One weights setting for every model, or a mapping with exactly one per model.

    A mapping is what a sweep over both backbones needs with local files (no download), since
    a file holds one backbone's weights.
    """
    if not _valid(value):  # its section was not a mapping, already reported
        return INVALID
    if not isinstance(value, Mapping):
        return _read_weights_value(reader, value, "training.weights", source)
    if not _valid(models):
        return INVALID
    reader.unknown(value, list(models), "training.weights")
    weights = {}
    for model in models:
        if model not in value:
            reader.errors.append(f"training.weights.{model} is missing; it must be {WEIGHTS_RULE}")
        else:
            weights[model] = _read_weights_value(reader, value[model], f"training.weights.{model}", source)
    return weights if len(weights) == len(models) and _valid(*weights.values()) else INVALID


def _read_weights_value(reader: _Reader, value: Any, key: str, source: str) -> Any:
    """A weights path is relative to the sweep file, so a sweep and its weights move together."""
    if value in ("imagenet", "none"):
        return value
    if not isinstance(value, str) or not value:
        reader.fail(key, WEIGHTS_RULE, value)
        return INVALID
    base = Path(source).parent if Path(source).is_file() else Path.cwd()
    path = Path(os.path.abspath(base / Path(value).expanduser()))
    reader.check(path.is_file(), key, WEIGHTS_RULE, str(path))
    return str(path)


def parse_sweep(mapping: Any, source: str = "<dict>", text: str = "") -> SweepConfig:
    """Validate a parsed sweep file; raise one `ConfigError` listing every problem found."""
    if not isinstance(mapping, Mapping):
        rule = "a sweep file must be a mapping of settings with at least `name:`"
        raise ConfigError(f"{source}: {rule}, got {mapping!r}")
    if mapping.get("scheduler") == SCHEDULER_NONE:
        mapping = {**mapping, "scheduler": {"type": SCHEDULER_NONE}}
    models_known, max_depth = _backbones()
    reader = _Reader()
    raw = reader.section(mapping, _schema(models_known), "")

    data, training, sched, resources = raw["data"], raw["training"], raw["scheduler"], raw["resources"]
    models = _read_models(reader, raw["space"]["models"], models_known)
    ranges = {p: _read_float_range(reader, raw["space"][p], f"space.{p}") for p in FLOAT_PARAMETERS}
    weights = _read_weights(reader, training["weights"], models, source)
    unfreeze = INVALID
    if _valid(models, weights):
        scratch = frozenset(m for m in models if _weights_of(weights, m) == "none")
        unfreeze = _read_unfreeze(reader, raw["space"]["unfreeze_depth"], models, scratch, max_depth)
    space = None
    if _valid(models, unfreeze, *ranges.values()):
        space = SpaceConfig(models, unfreeze_depth=unfreeze, **ranges)
    points = _read_points(reader, raw["search"]["points_to_evaluate"], space)
    warm = _read_warm_start(reader, raw["search"]["warm_start"])

    val, test = data["val_fraction"], data["test_fraction"]
    if _valid(val, test):
        reader.check(val + test < 1, "data.val_fraction + data.test_fraction", "< 1", round(val + test, 10))
    epochs, warmup = training["epochs"], training["warmup_epochs"]
    if _valid(epochs, warmup) and space is not None and space.unfreeze_depth:  # only transfer mode warms up
        reader.check(warmup <= epochs, "training.warmup_epochs", f"<= training.epochs ({epochs})", warmup)
    max_epochs = epochs if sched["max_epochs"] is None else sched["max_epochs"]
    if _valid(epochs, max_epochs):
        reader.check(max_epochs <= epochs, "scheduler.max_epochs", f"<= training.epochs ({epochs})", max_epochs)
    grace = _read_grace(reader, sched, warmup, max_epochs, space)
    cpus, gpus = resources["cpus_per_trial"], resources["gpus_per_trial"]
    per_model = _read_per_model(reader, resources["per_model"], models, cpus, gpus)

    if reader.errors:
        raise ConfigError(_message(source, reader.errors))
    return SweepConfig(
        name=raw["name"],
        data=DataConfig(**{**data, "synthetic": SyntheticConfig(**data["synthetic"])}),
        space=space,
        search=SearchConfig(**{**raw["search"], "points_to_evaluate": points, "warm_start": warm}),
        scheduler=SchedulerConfig(**{**sched, "max_epochs": max_epochs, "grace_period": grace}),
        training=TrainingConfig(**{**training, "weights": weights}),
        resources=ResourcesConfig(**{**resources, "per_model": per_model}),
        storage=raw["storage"],
        failures=FailuresConfig(**raw["failures"]),
        tracking=TrackingConfig(**raw["tracking"]),
        source=source,
        text=text,
    )


def _read_grace(reader: _Reader, sched: dict[str, Any], warmup: Any, max_epochs: Any,
                space: SpaceConfig | None) -> Any:
    """ASHA's grace period: never a rung before the first fine-tuning epoch has been scored.

    In transfer mode the first `training.warmup_epochs` train the head only, where the unfreeze
    depth has had no effect yet: a rung there would stop trials for a difference they have not
    made. Left null it is derived (the first fine-tuning epoch, or 1 when every model trains from
    scratch); set explicitly inside the warm-up it is refused, naming both keys.
    """
    grace = sched["grace_period"]
    if not _valid(grace, warmup, max_epochs) or space is None:
        return INVALID
    first_scored = warmup + 1 if space.unfreeze_depth else 1
    why = (f"training.warmup_epochs is {warmup}: transfer-mode trials fine-tune from epoch {first_scored}, "
           "and ASHA must not compare them before that")
    asha = sched["type"] == "asha"
    if grace is None:
        if asha and first_scored > max_epochs:
            reader.errors.append(f"scheduler.max_epochs ({max_epochs}) leaves no fine-tuning epoch for ASHA "
                                 f"to compare ({why}); lower training.warmup_epochs or raise the epochs")
            return INVALID
        return min(first_scored, max_epochs)
    if asha:
        reader.check(grace >= first_scored, "scheduler.grace_period", f">= {first_scored} ({why})", grace)
    reader.check(grace <= max_epochs, "scheduler.grace_period", f"<= scheduler.max_epochs ({max_epochs})", grace)
    return grace


def _message(source: str, errors: list[str]) -> str:
    return "\n".join(f"{source}: {error}" for error in errors)


def load_sweep(path: str | os.PathLike[str]) -> SweepConfig:
    """Read and validate a sweep file (plain YAML data only: `yaml.safe_load`, never evaluated)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: sweep file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: cannot read the sweep file ({error})") from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    return parse_sweep(mapping, source=source, text=text)


def to_dict(config: SweepConfig) -> dict[str, Any]:
    """The resolved settings as plain JSON-able data; `parse_sweep` of it gives `config` back."""
    settings = _plain(config)
    del settings["source"], settings["text"]
    return settings


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def with_overrides(config: SweepConfig, **changes: Any) -> SweepConfig:
    """A new validated config with CLI overrides applied; `None` values mean "not given"."""
    unknown = sorted(set(changes) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown override {unknown[0]!r} (allowed: {', '.join(sorted(OVERRIDES))})")
    settings = to_dict(config)
    for option, value in changes.items():
        if value is None:
            continue
        *sections, key = OVERRIDES[option].split(".")
        target = settings
        for section in sections:
            target = target[section]
        target[key] = value
    return parse_sweep(settings, source=config.source, text=config.text)
