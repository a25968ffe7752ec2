"""Validating a parsed sweep file against the schema: every error at once, then the objects.

Every violation is reported in one shape, `<file>: <dotted.key> must be <what is allowed>, got
<value>`, all errors at once, so a user fixes a sweep file in one pass instead of one error per run.
Rules that span keys (fractions that must leave a training set, a grace period after the warm-up,
a depth range per transfer-mode model) are checked here too, after the per-key constraints.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hamtune.backbones import BACKBONES, max_unfreeze_depth
from hamtune.config.constraints import INVALID, REQUIRED, Field, GpuCount, Interval, Location, Nullable, OneOf
from hamtune.config.schema import COUNT, CPUS, DEPTH_RANGE, DOMAINS, SCHEDULER_NONE, WEIGHTS_RULE, schema
from hamtune.config.types import (
    SCRATCH,
    DataConfig,
    FailuresConfig,
    FloatRange,
    IntRange,
    ModelResources,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SpaceConfig,
    SweepConfig,
    SyntheticConfig,
    TrackingConfig,
    TrainingConfig,
    TrialPoint,
    weights_of,
)
from hamtune.errors import ConfigError
from hamtune.keys import FLOAT_HYPERPARAMETERS

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


def _read_unfreeze(reader: _Reader, value: Any, models: tuple[str, ...], scratch: frozenset[str],
                   max_depth: Callable[[str], int]) -> Any:
    """One `IntRange` per transfer-mode model: the default ranges when the key is absent.

    A model trained from scratch trains every block from the first epoch, so a depth range for
    it would be silently meaningless: it is refused, naming the weights setting that decides it.
    """
    transfer = tuple(m for m in models if m not in scratch)
    if value is None:
        value = {m: {"low": 0, "high": BACKBONES[m].default_unfreeze} for m in transfer}
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
    bounds = {p: Interval(float, *_bounds(getattr(space, p))) for p in FLOAT_HYPERPARAMETERS}
    points = []
    for i, entry in enumerate(value):
        where = f"search.points_to_evaluate[{i}]"
        point = _read_point(reader, entry, where, space.models, bounds, space.unfreeze_depth,
                            lambda name, where=where: f"{where}.{name}")
        if point is not None:
            points.append(point)
    return tuple(points)  # incomplete only when errors were reported, and then nothing is built


def _read_point(reader: _Reader, entry: Any, where: str, models: tuple[str, ...], bounds: Mapping[str, Interval],
                depths: Mapping[str, IntRange], key: Callable[[str], str]) -> TrialPoint | None:
    """One configuration: a model, each float within `bounds`, the depth within the model's range in
    `depths` (and none for a model absent from it, trained from scratch); `key` names each setting."""
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        reader.fail(where, "a mapping", entry)
        return None
    spec = {
        "model": Field(REQUIRED, OneOf(models)),
        **{p: Field(REQUIRED, bounds[p]) for p in FLOAT_HYPERPARAMETERS},
        "unfreeze_depth": Field(None, Nullable(COUNT)),
    }
    reader.unknown(entry, list(spec), where)
    raw = {name: reader.field(entry, name, field, key(name)) for name, field in spec.items()}
    if not _valid(*raw.values()):
        return None
    depth, depth_key = depths.get(raw["model"]), key("unfreeze_depth")
    if depth is None:  # trained from scratch
        if raw["unfreeze_depth"] is not None:
            reader.errors.append(_SCRATCH_DEPTH.format(key=depth_key, model=raw["model"]))
    elif raw["unfreeze_depth"] is None:
        reader.errors.append(f"{depth_key} is missing; it must be {Interval(int, depth.low, depth.high)} "
                             f"for {raw['model']}")
    else:
        rule = Interval(int, depth.low, depth.high)
        ok = depth.low <= raw["unfreeze_depth"] <= depth.high
        reader.check(ok, depth_key, f"{rule} for {raw['model']}", raw["unfreeze_depth"])
    return TrialPoint(**raw)


def parse_point(sweep: SweepConfig, values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> TrialPoint:
    """One configuration trained on its own (`hamtune train`), by the rules of a sweep file's space.

    Each float may be anything a range in the space may span (`schema.DOMAINS`), the depth any
    number of the model's blocks in transfer mode and none from scratch. `names` spells each key
    as the caller's user wrote it (the CLI: its flags), so a message names what to change.
    """
    reader = _Reader()
    depths = {m: IntRange(0, max_unfreeze_depth(m)) for m in sweep.space.models if sweep.training.mode_for(m) != SCRATCH}
    point = _read_point(reader, values, "", sweep.space.models, DOMAINS, depths,
                        lambda name: (names or {}).get(name, name))
    if reader.errors:
        raise ConfigError(_message(sweep.source, reader.errors))
    return point


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
    models_known, max_depth = tuple(BACKBONES), max_unfreeze_depth
    reader = _Reader()
    raw = reader.section(mapping, schema(models_known), "")

    data, training, sched, resources = raw["data"], raw["training"], raw["scheduler"], raw["resources"]
    models = _read_models(reader, raw["space"]["models"], models_known)
    ranges = {p: _read_float_range(reader, raw["space"][p], f"space.{p}") for p in FLOAT_HYPERPARAMETERS}
    weights = _read_weights(reader, training["weights"], models, source)
    unfreeze = INVALID
    if _valid(models, weights):
        scratch = frozenset(m for m in models if weights_of(weights, m) == "none")
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
