"""Sweep-file validation: shipped files load, every rule has a message naming file, key and value."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hamtune.config import ModelResources, SweepConfig, load_sweep, parse_sweep, to_dict, with_overrides
from hamtune.config.constraints import Field
from hamtune.config.schema import schema
from hamtune.errors import ConfigError
from hamtune.backbones import BACKBONES, max_unfreeze_depth
from tests.support.shared import REPO

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
POINT = {"model": "densenet121", "learning_rate": 1.0e-3, "dropout": 0.2, "class_weight_power": 0.5, "unfreeze_depth": 4}


def _set(mapping: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `mapping` with `value` at the dotted key (sections created as needed)."""
    out = copy.deepcopy(mapping)
    *sections, key = dotted.split(".")
    target = out
    for section in sections:
        target = target.setdefault(section, {})
    target[key] = value
    return out


def _load(tmp_path: Path, settings: Any) -> SweepConfig:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return load_sweep(path)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_shipped_sweep_loads_and_round_trips(path: Path) -> None:
    config = load_sweep(path)
    assert config.source == str(path) and config.text == path.read_text(encoding="utf-8")
    transfer = {m for m in config.space.models if config.training.mode_for(m) == "transfer"}
    assert set(config.space.unfreeze_depth) == transfer
    assert parse_sweep(json.loads(json.dumps(to_dict(config))), source=config.source, text=config.text) == config


def test_shipped_sweeps_are_the_expected_set() -> None:
    assert [p.name for p in SWEEPS] == [
        "dev-quick.yaml", "dev.yaml", "ham10000-workstation.yaml", "ham10000.yaml", "smoke.yaml"]


def test_smoke_sweep_is_small_synthetic_and_cpu_only() -> None:
    config = load_sweep(next(p for p in SWEEPS if p.name == "smoke.yaml"))
    assert config.data.dir is None and config.data.image_size == 32
    assert config.training.weights == "none"
    assert config.search.trials <= 4 and config.training.epochs <= 2
    assert all(config.resources.for_model(m).gpus == 0 for m in config.space.models)
    assert config.storage == os.path.abspath("hamtune-runs")


def test_defaults_fill_every_key() -> None:
    config = parse_sweep({"name": "minimal"})
    assert config.source == "<dict>"
    assert config.space.models == tuple(BACKBONES)
    assert config.space.learning_rate.log and not config.space.dropout.log
    assert config.scheduler.type == "asha" and config.scheduler.max_epochs == config.training.epochs == 20
    assert config.resources.for_model("densenet121") == ModelResources(cpus=2.0, gpus=0.0)
    assert config.storage == os.path.expanduser("~/hamtune-runs")
    assert config.search.points_to_evaluate == ()


def test_every_schema_default_satisfies_its_own_constraint() -> None:
    def leaves(spec: dict[str, Any], prefix: str = ""):
        for name, item in spec.items():
            if isinstance(item, Field):
                yield prefix + name, item
            else:
                yield from leaves(item, f"{prefix}{name}.")

    fields = dict(leaves(schema(tuple(BACKBONES))))
    for key, field in fields.items():
        if key != "name":
            field.constraint.clean(field.default)  # raises ValueError if a default breaks its rule
            assert str(field.constraint), key
    resolved = to_dict(parse_sweep({"name": "x"}))
    for section, spec in schema(tuple(BACKBONES)).items():
        if isinstance(spec, dict):
            assert set(spec) == set(resolved[section]), section


def test_frozen() -> None:
    config = parse_sweep({"name": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "y"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.search.trials = 1  # type: ignore[misc]


BAD_VALUES = [
    ("name", "a/b", r"name must be a name of letters, digits, '_', '\.' and '-', got 'a/b'"),
    ("name", "..", r"name must be .*, got '\.\.'"),
    ("data.dir", "http://host/ham", r"data\.dir must be null or a local path or a file://, gs://, s3:// URI, got 'http://host/ham'"),
    ("data.format", "zip", r"data\.format must be one of auto, kaggle, isic2018, got 'zip'"),
    ("data.image_size", 16, r"data\.image_size must be an int in \[32, 1024\], got 16"),
    ("data.image_size", 224.0, r"data\.image_size must be an int in \[32, 1024\], got 224\.0"),
    ("data.image_size", 2240, r"data\.image_size must be an int in \[32, 1024\], got 2240"),
    ("data.val_fraction", 1.5, r"data\.val_fraction must be a float in \(0, 1\), got 1\.5"),
    ("data.test_fraction", 0, r"data\.test_fraction must be a float in \(0, 1\), got 0"),
    ("data.split_seed", -1, r"data\.split_seed must be an int in \[0, 4294967295\], got -1"),
    ("data.cache_dir", "s3://bucket/cache", r"data\.cache_dir must be null or a local path, got 's3://bucket/cache'"),
    ("data.cache_dir", f"{__file__}/cache", r"data\.cache_dir must be null or a local path, got '.*test_config\.py/cache' "
                                           r"\(.*test_config\.py exists and is not a directory\)"),
    ("data.synthetic.images", 0, r"data\.synthetic\.images must be an int in \[1, inf\), got 0"),
    ("data", [1], r"data must be a mapping, got \[1\]"),
    ("space.models", [], r"space\.models must be a non-empty list of distinct models from convnext_small, densenet121, got \[\]"),
    ("space.models", "densenet121", r"space\.models must be a non-empty list .*, got 'densenet121'"),
    ("space.models", ["convnext_small", "resnet"], r"space\.models\[1\] must be one of convnext_small, densenet121, got 'resnet'"),
    ("space.models", ["densenet121", "densenet121"], r"space\.models\[1\] must be a model not listed before, got 'densenet121'"),
    ("space.learning_rate.low", -1.0, r"space\.learning_rate\.low must be a float in \(0, inf\), got -1\.0"),
    ("space.learning_rate.high", "1e-2", r"space\.learning_rate\.high must be a float in \(0, inf\), got '1e-2' \(YAML reads 1e-2 as text"),
    ("space.learning_rate.high", 1.0e-6, r"space\.learning_rate\.low must be < space\.learning_rate\.high \(1e-06\), got 1e-05"),
    ("space.learning_rate.log", "yes", r"space\.learning_rate\.log must be one of true, false, got 'yes'"),
    ("space.dropout.high", 1.0, r"space\.dropout\.high must be a float in \[0, 1\), got 1\.0"),
    ("space.dropout.log", True, r"space\.dropout\.low must be > 0 when space\.dropout\.log is true, got 0\.0"),
    ("space.class_weight_power.low", -0.5, r"space\.class_weight_power\.low must be a float in \[0, inf\), got -0\.5"),
    ("space.class_weight_power.low", float("nan"), r"space\.class_weight_power\.low must be a float in \[0, inf\), got nan"),
    ("space.unfreeze_depth.densenet121", {"low": 0, "high": 60},
     r"space\.unfreeze_depth\.densenet121\.high must be <= 58 \(densenet121 has 58 blocks\), got 60"),
    ("space.unfreeze_depth.convnext_small", {"low": 0, "high": 37},
     r"space\.unfreeze_depth\.convnext_small\.high must be <= 36 \(convnext_small has 36 blocks\), got 37"),
    ("space.unfreeze_depth.densenet121", {"low": 5, "high": 3},
     r"space\.unfreeze_depth\.densenet121\.low must be <= space\.unfreeze_depth\.densenet121\.high \(3\), got 5"),
    ("space.unfreeze_depth.densenet121", {"low": -1, "high": 3},
     r"space\.unfreeze_depth\.densenet121\.low must be an int in \[0, inf\), got -1"),
    ("space.unfreeze_depth.densenet121", {"low": 0},
     r"space\.unfreeze_depth\.densenet121\.high is missing; it must be an int in \[0, inf\)"),
    ("space.unfreeze_depth", {"convnext_small": {"low": 0, "high": 2}},
     r"space\.unfreeze_depth\.densenet121 is missing; every transfer-mode model in space\.models needs a \{low, high\} range"),
    ("space.unfreeze_depth", [0, 3], r"space\.unfreeze_depth must be a mapping of each model in space\.models to \{low, high\}, got \[0, 3\]"),
    ("search.trials", 0, r"search\.trials must be an int in \[1, inf\), got 0"),
    ("search.max_concurrent", 0, r"search\.max_concurrent must be an int in \[1, inf\), got 0"),
    ("search.seed", 1.5, r"search\.seed must be an int in \[0, 2147483647\], got 1\.5"),
    ("search.seed", 2**31, r"search\.seed must be an int in \[0, 2147483647\], got 2147483648"),
    ("search.points_to_evaluate", {"model": "x"}, r"search\.points_to_evaluate must be a list of .*, got \{'model': 'x'\}"),
    ("search.points_to_evaluate", ["densenet121"], r"search\.points_to_evaluate\[0\] must be a mapping, got 'densenet121'"),
    ("search.points_to_evaluate", [{**POINT, "learning_rate": 0.5}],
     r"search\.points_to_evaluate\[0\]\.learning_rate must be a float in \[1e-05, 0\.01\], got 0\.5"),
    ("search.points_to_evaluate", [{**POINT, "unfreeze_depth": 17}],
     r"search\.points_to_evaluate\[0\]\.unfreeze_depth must be an int in \[0, 16\] for densenet121, got 17"),
    ("search.points_to_evaluate", [{**POINT, "model": "resnet"}],
     r"search\.points_to_evaluate\[0\]\.model must be one of convnext_small, densenet121, got 'resnet'"),
    ("search.points_to_evaluate", [{k: v for k, v in POINT.items() if k != "dropout"}],
     r"search\.points_to_evaluate\[0\]\.dropout is missing; it must be a float in \[0\.0, 0\.5\]"),
    ("scheduler", "asha", r"scheduler must be a mapping or 'none', got 'asha'"),
    ("scheduler.type", "hyperband", r"scheduler\.type must be one of asha, none, got 'hyperband'"),
    ("scheduler.grace_period", 0, r"scheduler\.grace_period must be null or an int in \[1, inf\), got 0"),
    ("scheduler.grace_period", 21, r"scheduler\.grace_period must be <= scheduler\.max_epochs \(20\), got 21"),
    ("scheduler.max_epochs", 30, r"scheduler\.max_epochs must be <= training\.epochs \(20\), got 30"),
    ("scheduler.reduction_factor", 1, r"scheduler\.reduction_factor must be a float in \(1, inf\), got 1"),
    ("training.epochs", 0, r"training\.epochs must be an int in \[1, inf\), got 0"),
    ("training.warmup_epochs", 21, r"training\.warmup_epochs must be <= training\.epochs \(20\), got 21"),
    ("training.batch_size", 0, r"training\.batch_size must be an int in \[1, inf\), got 0"),
    ("training.patience", 0, r"training\.patience must be an int in \[1, inf\), got 0"),
    ("training.fine_tune_lr_scale", 0.0, r"training\.fine_tune_lr_scale must be a float in \(0, 1\], got 0\.0"),
    ("training.fine_tune_lr_scale", 1.5, r"training\.fine_tune_lr_scale must be a float in \(0, 1\], got 1\.5"),
    ("training.weights", 3, r"training\.weights must be 'imagenet', 'none' or the path of an existing weights file, got 3"),
    ("training.weights", {"densenet121": "none"},
     r"training\.weights\.convnext_small is missing; it must be 'imagenet', 'none' or the path of an existing"),
    ("training.weights", {"convnext_small": "none", "densenet121": "none", "resnet50": "none"},
     r"unknown key 'resnet50' in training\.weights \(allowed: convnext_small, densenet121\)"),
    ("training.weights", {"convnext_small": "none", "densenet121": ["a.h5"]},
     r"training\.weights\.densenet121 must be 'imagenet', 'none' or the path of an existing weights file, got \['a\.h5'\]"),
    ("training.weights", "missing.weights.h5",
     r"training\.weights must be 'imagenet', 'none' or the path of an existing weights file, got '.*missing\.weights\.h5'"),
    ("training.mixed_precision", "yes", r"training\.mixed_precision must be one of true, false, float16, bfloat16, got 'yes'"),
    ("resources.cpus_per_trial", 0, r"resources\.cpus_per_trial must be a float in \(0, inf\), got 0"),
    ("resources.gpus_per_trial", 1.5, r"resources\.gpus_per_trial must be a fraction in \[0, 1\) or a whole number, got 1\.5"),
    ("resources.gpus_per_trial", -1, r"resources\.gpus_per_trial must be a fraction in \[0, 1\) or a whole number, got -1"),
    ("resources.per_model", {"densenet121": {"gpus": 2.5}},
     r"resources\.per_model\.densenet121\.gpus must be a fraction in \[0, 1\) or a whole number, got 2\.5"),
    ("resources.per_model", [], r"resources\.per_model must be a mapping of models in space\.models to \{cpus, gpus\}, got \[\]"),
    ("storage", "hdfs://namenode/runs", r"storage must be a local path or a file://, gs://, s3:// URI, got 'hdfs://namenode/runs'"),
    ("storage", 5, r"storage must be a local path or a file://, gs://, s3:// URI, got 5"),
    ("storage", __file__, r"storage must be .* URI, got '.*test_config\.py' \(.*test_config\.py exists and is not a directory\)"),
    ("storage", f"file://{__file__}/runs", r"storage must be .* URI, got 'file://.*/runs' \(.*test_config\.py exists and is not"),
    ("failures.max_retries", -1, r"failures\.max_retries must be an int in \[0, inf\), got -1"),
]


def test_the_highest_search_seed_leaves_room_for_every_trial_seed() -> None:
    """Trials train with `trial_seed` (search.seed plus a per-configuration offset), which seeds numpy."""
    import numpy as np

    from hamtune.training.trial import trial_seed

    sweep = parse_sweep({"name": "x", "search": {"seed": 2**31 - 1}, "training": {"seed_per_trial": True}})
    for i in range(1000):
        point = {**POINT, "learning_rate": 1.0e-5 * (1 + i), "dropout": i % 50 / 100}
        np.random.RandomState(trial_seed(sweep.search.seed, point, sweep.training))  # ValueError past 2**32 - 1


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_is_reported_with_file_key_and_value(tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "x.yaml")) + ": " + message):
        _load(tmp_path, _set({"name": "x"}, key, value))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"data": {"val_fraction": 0.6, "test_fraction": 0.4}}, r"data\.val_fraction \+ data\.test_fraction must be < 1, got 1\.0"),
        ({"training": {"epochs": 3}, "scheduler": {"grace_period": 4}}, r"scheduler\.grace_period must be <= scheduler\.max_epochs \(3\), got 4"),
        ({"space": {"models": ["densenet121"], "unfreeze_depth": {"densenet121": {"high": 2}, "convnext_small": {"high": 2}}}},
         r"unknown key 'convnext_small' in space\.unfreeze_depth \(allowed: densenet121\)"),
        ({"space": {"models": ["densenet121"]}, "resources": {"per_model": {"convnext_small": {"gpus": 1}}}},
         r"unknown key 'convnext_small' in resources\.per_model \(allowed: densenet121\)"),
        ({"space": {"models": ["convnext_small"]}, "search": {"points_to_evaluate": [POINT]}},
         r"search\.points_to_evaluate\[0\]\.model must be one of convnext_small, got 'densenet121'"),
    ],
)
def test_cross_field_rules(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"<dict>: " + message):
        parse_sweep({"name": "x", **settings})


@pytest.mark.parametrize(
    ("where", "section", "allowed"),
    [
        ("", {}, "data, failures, name, resources, scheduler, search, space, storage, tracking, training"),
        ("data", {"data": {}}, "cache_dir, dir, format, image_size, split_seed, synthetic, test_fraction, val_fraction"),
        ("data.synthetic", {"data": {"synthetic": {}}}, "images, seed"),
        ("space", {"space": {}}, "class_weight_power, dropout, learning_rate, models, unfreeze_depth"),
        ("space.learning_rate", {"space": {"learning_rate": {}}}, "high, log, low"),
        ("space.unfreeze_depth.densenet121", {"space": {"models": ["densenet121"], "unfreeze_depth": {"densenet121": {"high": 3}}}}, "high, low"),
        ("search", {"search": {}}, "max_concurrent, points_to_evaluate, sampler, seed, storage, trials, warm_start, warm_start_any_data"),
        ("search.points_to_evaluate[0]", {"search": {"points_to_evaluate": [dict(POINT)]}},
         "class_weight_power, dropout, learning_rate, model, unfreeze_depth"),
        ("scheduler", {"scheduler": {}}, "grace_period, max_epochs, reduction_factor, type"),
        ("training", {"training": {}}, "augmentation, backend, batch_size, epochs, fine_tune_lr_scale, lr_schedule, lr_warmup_epochs, mixed_precision, patience, seed_per_trial, warm_trials, warmup_epochs, weight_averaging, weight_decay, weights"),
        ("resources", {"resources": {}}, "cpus_per_trial, gpus_per_trial, per_model"),
        ("resources.per_model.densenet121", {"resources": {"per_model": {"densenet121": {}}}}, "cpus, gpus"),
        ("failures", {"failures": {}}, "max_retries"),
    ],
)
def test_unknown_key_at_every_level_lists_the_allowed_ones(where: str, section: dict[str, Any], allowed: str) -> None:
    settings = {"name": "x", **copy.deepcopy(section)}
    target = settings
    for part in filter(None, re.split(r"\.|\[(\d+)\]", where)):
        target = target[int(part)] if part.isdigit() else target[part]
    target["bogus"] = 1
    place = f"in {re.escape(where)}" if where else "at the top level"
    with pytest.raises(ConfigError, match=rf"unknown key 'bogus' {place} \(allowed: {allowed}\)"):
        parse_sweep(settings)


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trails' in search \(allowed: .*\); did you mean 'trials'\?"):
        parse_sweep({"name": "x", "search": {"trails": 8}})


def test_missing_name_and_non_mapping_files() -> None:
    with pytest.raises(ConfigError, match=r"<dict>: name is missing; it must be a name of letters"):
        parse_sweep({})
    with pytest.raises(ConfigError, match=r"<dict>: a sweep file must be a mapping of settings with at least `name:`, got None"):
        parse_sweep(None)
    with pytest.raises(ConfigError, match=r"a sweep file must be a mapping .*, got \['name'\]"):
        parse_sweep(["name"])


def test_all_errors_are_reported_together_one_per_line() -> None:
    settings = {"name": "x", "search": {"trials": 0, "seed": -1}, "training": {"epochs": 0}, "storage": 3}
    with pytest.raises(ConfigError) as info:
        parse_sweep(settings, source="sweeps/x.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith("sweeps/x.yaml: ") for line in lines)
    assert {line.split(": ")[1].split(" must")[0] for line in lines} == {"search.trials", "search.seed", "training.epochs", "storage"}


@pytest.mark.parametrize("section", ["data", "space", "search", "training", "resources", "failures"])
def test_a_section_that_is_not_a_mapping_is_one_error(section: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sweep({"name": "x", section: [1]})
    assert str(info.value) == f"<dict>: {section} must be a mapping, got [1]"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsearch:\n  trials: 4\n   seed: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:4:") + r"\d+: invalid YAML: mapping values are not allowed here"):
        load_sweep(path)


def test_yaml_is_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:1:") + r"\d+: invalid YAML"):
        load_sweep(path)
    assert not marker.exists()


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.yaml'}: sweep file not found")):
        load_sweep(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: cannot read the sweep file")):
        load_sweep(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r": a sweep file must be a mapping"):
        load_sweep(path)


def test_scheduler_none_and_round_trip() -> None:
    config = parse_sweep({"name": "x", "scheduler": "none", "training": {"epochs": 4}})
    assert config.scheduler.type == "none" and config.scheduler.max_epochs == 4
    assert parse_sweep(to_dict(config)) == config


def test_unfreeze_defaults_follow_the_models_listed() -> None:
    config = parse_sweep({"name": "x", "space": {"models": ["densenet121"]}})
    assert list(config.space.unfreeze_depth) == ["densenet121"]
    assert config.space.unfreeze_depth["densenet121"].high <= max_unfreeze_depth("densenet121")


def test_unfreeze_depth_may_reach_every_block() -> None:
    top = max_unfreeze_depth("densenet121")
    config = parse_sweep({"name": "x", "space": {"models": ["densenet121"], "unfreeze_depth": {"densenet121": {"high": top}}}})
    assert config.space.unfreeze_depth["densenet121"].low == 0 and config.space.unfreeze_depth["densenet121"].high == top


def test_per_model_resources_fall_back_to_the_defaults() -> None:
    config = parse_sweep({
        "name": "x",
        "resources": {"cpus_per_trial": 3, "gpus_per_trial": 0.5, "per_model": {"convnext_small": {"gpus": 1}}},
    })
    assert config.resources.for_model("convnext_small") == ModelResources(cpus=3.0, gpus=1.0)
    assert config.resources.for_model("densenet121") == ModelResources(cpus=3.0, gpus=0.5)
    assert parse_sweep(to_dict(config)) == config


def test_whole_gpus_above_one_are_allowed() -> None:
    assert parse_sweep({"name": "x", "resources": {"gpus_per_trial": 2}}).resources.gpus_per_trial == 2.0


def test_points_to_evaluate_become_typed_and_round_trip() -> None:
    config = parse_sweep({"name": "x", "search": {"points_to_evaluate": [POINT]}})
    (point,) = config.search.points_to_evaluate
    assert dataclasses.asdict(point) == POINT
    assert to_dict(config)["search"]["points_to_evaluate"] == [POINT]
    assert parse_sweep(to_dict(config)) == config


def test_weights_path_is_relative_to_the_sweep_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_dir = tmp_path / "sweeps"
    sweep_dir.mkdir()
    (sweep_dir / "backbone.weights.h5").write_bytes(b"not really weights")
    path = sweep_dir / "local.yaml"
    path.write_text("name: local\ntraining: {weights: backbone.weights.h5}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_sweep(path.relative_to(tmp_path))
    assert config.training.weights == str(sweep_dir / "backbone.weights.h5")
    assert parse_sweep(to_dict(config)) == dataclasses.replace(config, source="<dict>", text="")


def test_weights_per_model_resolve_relative_to_the_sweep_file_and_round_trip(tmp_path: Path) -> None:
    (tmp_path / "convnext.weights.h5").write_bytes(b"checked when the sweep starts, not here")
    path = tmp_path / "offline.yaml"
    path.write_text("name: offline\ntraining:\n  weights: {convnext_small: convnext.weights.h5, densenet121: none}\n",
                    encoding="utf-8")
    config = load_sweep(path)
    assert config.training.weights == {"convnext_small": str(tmp_path / "convnext.weights.h5"), "densenet121": "none"}
    assert config.training.weights_for("convnext_small") == str(tmp_path / "convnext.weights.h5")
    assert config.training.weights_for("densenet121") == "none"
    assert parse_sweep(to_dict(config)) == dataclasses.replace(config, source="<dict>", text="")
    one = parse_sweep({"name": "x", "training": {"weights": "none"}})
    assert [one.training.weights_for(m) for m in one.space.models] == ["none", "none"]


def test_a_model_trained_from_scratch_shows_no_unfreeze_depth(tmp_path: Path) -> None:
    """Every block of a from-scratch model trains, so the depth the trial carries (all 58 blocks
    of DenseNet121) is shown as not applying; a fine-tuned model shows its depth."""
    (tmp_path / "convnext.weights.h5").write_bytes(b"checked when the sweep starts, not here")
    training = parse_sweep({"name": "x", "training": {"weights": {"convnext_small": str(tmp_path / "convnext.weights.h5"),
                                                                  "densenet121": "none"}}}).training
    scratch = {**POINT, "unfreeze_depth": 58}
    assert training.shown_params(scratch) == {**POINT, "unfreeze_depth": None}
    assert scratch["unfreeze_depth"] == 58  # a copy: training still reads the full depth
    transfer = {**POINT, "model": "convnext_small", "unfreeze_depth": 2}
    assert training.shown_params(transfer) == transfer


def test_local_paths_resolve_against_the_current_directory_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = parse_sweep({"name": "x", "storage": "./runs", "data": {"dir": "~/ham10000", "cache_dir": "cache"}})
    assert config.storage == str(tmp_path / "runs")
    assert config.data.dir == str(tmp_path / "home" / "ham10000")
    assert config.data.cache_dir == str(tmp_path / "cache")


@pytest.mark.parametrize("uri", ["s3://bucket/runs", "gs://bucket/runs", "file:///mnt/nfs/runs"])
def test_uris_are_kept_as_given(uri: str) -> None:
    config = parse_sweep({"name": "x", "storage": uri, "data": {"dir": uri}})
    assert config.storage == uri and config.data.dir == uri


def test_overrides_return_a_new_validated_config(tmp_path: Path) -> None:
    config = load_sweep(next(p for p in SWEEPS if p.name == "smoke.yaml"))
    changed = with_overrides(config, data_dir=str(tmp_path), storage="s3://bucket/runs", name="other", trials=2)
    assert (changed.data.dir, changed.storage, changed.name, changed.search.trials) == (str(tmp_path), "s3://bucket/runs", "other", 2)
    assert (changed.source, changed.text) == (config.source, config.text)
    assert config.name == "smoke" and config.search.trials == 4
    assert with_overrides(config, data_dir=None, storage=None, name=None, trials=None) == config


def test_bad_override_values_are_validated_like_the_file() -> None:
    config = parse_sweep({"name": "x"}, source="sweeps/x.yaml")
    with pytest.raises(ConfigError, match=r"sweeps/x\.yaml: search\.trials must be an int in \[1, inf\), got 0"):
        with_overrides(config, trials=0)
    with pytest.raises(ConfigError, match=r"name must be a name of letters, .*, got 'a b'"):
        with_overrides(config, name="a b")


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown override 'epochs' \(allowed: data_dir, name, storage, trials\)"):
        with_overrides(parse_sweep({"name": "x"}), epochs=3)


# --- training modes: from scratch (weights none) and transfer -------------------------------


def test_weights_none_means_from_scratch_with_no_depth_to_search() -> None:
    config = parse_sweep({"name": "s", "training": {"weights": "none", "epochs": 2}})
    assert {m: config.training.mode_for(m) for m in BACKBONES} == {m: "scratch" for m in BACKBONES}
    assert config.space.unfreeze_depth == {}
    assert config.scheduler.grace_period == 1  # no warm-up: ASHA may compare from the first epoch
    assert {m: config.training.augmentation_for(m) for m in BACKBONES} == {m: "flips" for m in BACKBONES}


def test_modes_are_per_model_when_weights_are() -> None:
    config = parse_sweep({"name": "s", "training": {"weights": {"convnext_small": "imagenet", "densenet121": "none"}}})
    assert config.training.mode_for("convnext_small") == "transfer"
    assert config.training.mode_for("densenet121") == "scratch"
    assert set(config.space.unfreeze_depth) == {"convnext_small"}
    assert config.training.augmentation_for("convnext_small") == "full"


def test_an_unfreeze_range_for_a_from_scratch_model_is_refused() -> None:
    settings = {"name": "s", "training": {"weights": "none"},
                "space": {"models": ["densenet121"], "unfreeze_depth": {"densenet121": {"low": 0, "high": 3}}}}
    with pytest.raises(ConfigError, match=r"space\.unfreeze_depth\.densenet121 does not apply: training\.weights is "
                                          r"'none' for densenet121, so it trains from scratch"):
        parse_sweep(settings)


def test_a_from_scratch_point_takes_no_unfreeze_depth() -> None:
    base = {"name": "s", "training": {"weights": "none"}, "space": {"models": ["densenet121"]}}
    point = {k: v for k, v in POINT.items() if k != "unfreeze_depth"}
    assert parse_sweep({**base, "search": {"points_to_evaluate": [point]}}).search.points_to_evaluate[0].unfreeze_depth is None
    with pytest.raises(ConfigError, match=r"search\.points_to_evaluate\[0\]\.unfreeze_depth does not apply"):
        parse_sweep({**base, "search": {"points_to_evaluate": [POINT]}})


@pytest.mark.parametrize(("settings", "grace"), [
    ({"training": {"warmup_epochs": 3}}, 4),  # transfer: the first fine-tuning epoch
    ({"training": {"warmup_epochs": 0}}, 1),
    ({"training": {"warmup_epochs": 3}, "scheduler": {"grace_period": 5}}, 5),
    ({"training": {"warmup_epochs": 3}, "scheduler": "none"}, 4),
])
def test_the_grace_period_is_derived_from_the_warm_up(settings: dict[str, Any], grace: int) -> None:
    assert parse_sweep({"name": "g", **settings}).scheduler.grace_period == grace


def test_a_rung_inside_the_head_only_warm_up_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"scheduler\.grace_period must be >= 4 \(training\.warmup_epochs is 3: "
                                          r"transfer-mode trials fine-tune from epoch 4.*got 2"):
        parse_sweep({"name": "g", "training": {"warmup_epochs": 3}, "scheduler": {"grace_period": 2}})
    with pytest.raises(ConfigError, match=r"scheduler\.max_epochs \(3\) leaves no fine-tuning epoch for ASHA"):
        parse_sweep({"name": "g", "training": {"warmup_epochs": 3, "epochs": 3}})


def test_backend_and_precision_are_validated() -> None:
    training = parse_sweep({"name": "a", "training": {"backend": "jax", "mixed_precision": "bfloat16"}}).training
    assert (training.backend, training.gpu_policy) == ("jax", "mixed_bfloat16")
    assert parse_sweep({"name": "a"}).training.backend == "tensorflow"
    with pytest.raises(ConfigError, match=r"training\.backend must be one of tensorflow, jax, got 'torch'"):
        parse_sweep({"name": "a", "training": {"backend": "torch"}})


def test_augmentation_is_validated() -> None:
    assert parse_sweep({"name": "a", "training": {"augmentation": "none"}}).training.augmentation_for("densenet121") == "none"
    with pytest.raises(ConfigError, match=r"training\.augmentation must be one of auto, none, flips, full, got 'strong'"):
        parse_sweep({"name": "a", "training": {"augmentation": "strong"}})


def test_a_point_on_its_own_may_be_anything_a_space_may_span_and_its_messages_use_the_callers_names() -> None:
    from hamtune.config import parse_point

    transfer = parse_sweep({"name": "one", "space": {"models": ["densenet121"]}}, source="command line")
    point = parse_point(transfer, {**POINT, "learning_rate": 0.5, "unfreeze_depth": 58})  # outside the default space
    assert (point.learning_rate, point.unfreeze_depth) == (0.5, 58)
    with pytest.raises(ConfigError, match=r"^command line: --unfreeze-depth must be an int in \[0, 58\] for densenet121"):
        parse_point(transfer, {**POINT, "unfreeze_depth": 59}, {"unfreeze_depth": "--unfreeze-depth"})
    with pytest.raises(ConfigError, match=r"^command line: dropout must be a float in \[0, 1\), got 1\.0$"):
        parse_point(transfer, {**POINT, "dropout": 1.0})
    scratch = parse_sweep({"name": "one", "space": {"models": ["densenet121"]}, "training": {"weights": "none"}})
    assert parse_point(scratch, {**POINT, "unfreeze_depth": None}).unfreeze_depth is None
    with pytest.raises(ConfigError, match="unfreeze_depth does not apply"):
        parse_point(scratch, POINT)
