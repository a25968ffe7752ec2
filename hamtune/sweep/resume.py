"""What `hamtune sweep --resume` checks before it continues an experiment.

A resume rebuilds every trial from the sweep file given now, while Ray Tune restores the search
and scheduler state of the experiment as it started. An edited file would silently train the
rest of the sweep with other settings (or, for `search.trials`, be ignored), so the file must
agree with the settings the experiment saved, key by key, except the keys that only say where
things are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hamtune.config import SweepConfig, parse_sweep, to_dict
from hamtune.errors import ConfigError, ExperimentError, HamtuneError
from hamtune.store.experiment import CONFIG_FILE, MARKER, ExperimentDir
from hamtune.version import LAYOUT_VERSION

#: Settings that locate rather than define a sweep: a resumed experiment may find its data, cache
#: and storage somewhere else (the data's identity is its fingerprint, which resume checks apart).
LOCATIONS = frozenset({"name", "storage", "data.dir", "data.cache_dir"})
_ABSENT = object()


def setting_changes(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Each setting that differs, as "KEY: SAVED then, GIVEN now", in key order; locations excepted.

    Both are `to_dict` settings; sections compare key by key (dotted keys), anything else as a value.
    """
    before, after = _flatten(saved), _flatten(given)
    return [
        f"{key}: {_show(before.get(key, _ABSENT))} then, {_show(after.get(key, _ABSENT))} now"
        for key in sorted(before.keys() | after.keys())
        if key not in LOCATIONS and before.get(key, _ABSENT) != after.get(key, _ABSENT)
    ]


def check_resumable(sweep: SweepConfig, experiment: ExperimentDir) -> None:
    """Refuse to resume anything but a hamtune experiment started with these settings."""
    if not experiment.exists():
        raise ExperimentError(f"--resume: {experiment.uri} does not exist; run without --resume to start it")
    if not experiment.is_hamtune():
        raise ExperimentError(
            f"--resume: {experiment.uri} is not a hamtune experiment (no {experiment.uri}/{MARKER}); "
            "refusing to load its state"
        )
    check_layout(experiment)
    changes = setting_changes(_saved_settings(experiment), _as_saved(to_dict(sweep)))
    if changes:
        trials = any(change.startswith("search.trials:") for change in changes)
        raise ConfigError(
            f"{sweep.source}: --resume: these settings differ from the ones {experiment.uri} started with "
            f"({CONFIG_FILE}): {'; '.join(changes)}. A resumed sweep must run the settings it started "
            f"with{' (Ray Tune restores its number of trials, so --trials cannot extend it)' if trials else ''}: "
            "put them back, or start a new experiment with --name"
        )


def check_layout(experiment: ExperimentDir) -> None:
    """Refuse an experiment whose saved Ray Tune state names modules this version no longer has.

    Ray pickles the searcher, the callbacks and the trainable by module path; hamtune 0.2.0 moved
    every module into a sub-package, so an experiment started before it would fail deep inside
    Ray's unpickling. It is refused here, naming the version that can resume it.
    """
    made_by = experiment.info().get("hamtune")  # every sweep records it (`hamtune.sweep.run.versions`)
    if made_by is not None and _version(str(made_by)) < _version(LAYOUT_VERSION):
        raise ExperimentError(
            f"--resume: {experiment.uri} was started by hamtune {made_by}, and its saved Ray Tune state names "
            f"modules that hamtune {LAYOUT_VERSION} moved; resume it with hamtune {made_by} "
            f"(pip install 'hamtune=={made_by}'), or start it again with another --name"
        )


def _version(text: str) -> tuple[int, ...]:
    """A release version as numbers ("0.1.0" -> (0, 1, 0)); anything unreadable counts as oldest."""
    try:
        return tuple(int(part) for part in text.split("+")[0].split("."))
    except ValueError:
        return (0,)


def _saved_settings(experiment: ExperimentDir) -> dict[str, Any]:
    """The experiment's settings, completed with the defaults of settings added since it started."""
    saved = json.loads(experiment.read_text(CONFIG_FILE))
    try:
        return _as_saved(to_dict(parse_sweep(saved, source=f"{experiment.uri}/{CONFIG_FILE}")))
    except HamtuneError:  # e.g. a weights file since moved: compare what was saved, as saved
        return saved


def _as_saved(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as `ExperimentDir.create` writes them to JSON (lists for tuples, strings for the rest)."""
    return json.loads(json.dumps(settings, default=str))


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    return "(not set)" if value is _ABSENT else json.dumps(value)
