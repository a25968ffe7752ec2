"""Sweep files on disk: YAML in (`load_sweep`), plain settings out (`to_dict`), CLI overrides.

Only plain YAML data is read (`yaml.safe_load`, never evaluated), and every change goes back
through `parse_sweep`, so an overridden config is validated exactly like a file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hamtune.config.parsing import parse_sweep
from hamtune.config.types import SweepConfig
from hamtune.errors import ConfigError

#: `with_overrides` keywords (the CLI's flags) and the sweep key each one replaces.
OVERRIDES: dict[str, str] = {"name": "name", "data_dir": "data.dir", "storage": "storage", "trials": "search.trials"}


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
