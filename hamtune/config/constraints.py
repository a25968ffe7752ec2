"""Parameter constraints as data, for validating sweep files.

Each constraint `clean`s a value (normalising it) or raises ValueError, and its `str()` completes
the sentence "<key> must be ...", so one message shape serves every key (scikit-learn's
`_parameter_constraints` idea).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Protocol

#: Storage and data URI schemes that pyarrow.fs (and so Ray) can read; anything else is a local path.
URI_SCHEMES: tuple[str, ...] = ("file", "gs", "s3")

INVALID = object()  # a value that failed its check: later rules that need it are skipped
REQUIRED = object()  # a Field default meaning "no default"


class Constraint(Protocol):
    """What one key may be: `clean` returns the value normalised or raises ValueError (text: a hint)."""

    def clean(self, value: Any) -> Any: ...

    def __str__(self) -> str: ...  # completes "<key> must be ..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """An int or float between bounds; `closed` says which bounds are included."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # both | left | right | neither

    def clean(self, value: Any) -> Any:
        if self.kind is float and not (_is_number(value) and math.isfinite(value)):
            raise ValueError(_yaml_float_hint(value))
        if self.kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError("")
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            raise ValueError("")
        if self.high is not None and (value > self.high or (value == self.high and not right)):
            raise ValueError("")
        return self.kind(value)

    def __str__(self) -> str:
        left = "(-inf" if self.low is None else f"{'[' if self.closed in ('both', 'left') else '('}{self.low}"
        right = "inf)" if self.high is None else f"{self.high}{']' if self.closed in ('both', 'right') else ')'}"
        return f"{'an int' if self.kind is int else 'a float'} in {left}, {right}"


def _yaml_float_hint(value: Any) -> str:
    """PyYAML reads `1e-5` (no dot) as a string: say so, because the value looks right."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write it with a dot, e.g. 1.0e-5)"


@dataclass(frozen=True)
class OneOf:
    options: tuple[Any, ...]

    def clean(self, value: Any) -> Any:
        if not isinstance(value, (str, bool)) or value not in self.options:
            raise ValueError("")
        return value

    def __str__(self) -> str:
        return "one of " + ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in self.options)


@dataclass(frozen=True)
class Text:
    """A non-empty string matching `pattern`, described to users as `description`."""

    pattern: str = r".+"
    description: str = "a non-empty string"

    def clean(self, value: Any) -> Any:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise ValueError("")
        return value

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Location:
    """A local path (made absolute against the current directory) or a URI with an allowed scheme.

    With `directory`, a local path (or file:// URI) must be a directory or not exist yet: one that
    is, or lies under, a file would only fail when something is first written there, mid-run.
    """

    schemes: tuple[str, ...] = URI_SCHEMES
    directory: bool = False

    def clean(self, value: Any) -> Any:
        if isinstance(value, os.PathLike):  # a `pathlib.Path` from Python (`hamtune.api`)
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError("")
        if "://" in value:
            scheme, path = value.split("://", 1)
            if scheme.lower() not in self.schemes:
                raise ValueError("")
            if self.directory and scheme.lower() == "file":
                _check_directory(path)
            return value
        path = os.path.abspath(os.path.expanduser(value))
        if self.directory:
            _check_directory(path)
        return path

    def __str__(self) -> str:
        if not self.schemes:
            return "a local path"
        return "a local path or a " + ", ".join(f"{s}://" for s in self.schemes) + " URI"


def _check_directory(path: str) -> None:
    """Raise when `path`, or the nearest part of it that exists, is not a directory."""
    existing = os.path.abspath(path)
    while not os.path.lexists(existing) and existing != os.path.dirname(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f" ({existing} exists and is not a directory)")


@dataclass(frozen=True)
class GpuCount:
    """Ray shares a GPU between trials only in fractions below one; above that GPUs are whole."""

    def clean(self, value: Any) -> Any:
        if not _is_number(value) or not math.isfinite(value) or value < 0 or (value > 1 and value != int(value)):
            raise ValueError("")
        return float(value)

    def __str__(self) -> str:
        return "a fraction in [0, 1) or a whole number"


@dataclass(frozen=True)
class Nullable:
    inner: Any

    def clean(self, value: Any) -> Any:
        return None if value is None else self.inner.clean(value)

    def __str__(self) -> str:
        return f"null or {self.inner}"


@dataclass(frozen=True)
class Later:
    """A key that depends on others (the models listed), so a `_read_*` function checks it after them."""

    what: str

    def clean(self, value: Any) -> Any:
        return value

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True)
class Field:
    default: Any  # `REQUIRED` when the key has no default
    constraint: Constraint
