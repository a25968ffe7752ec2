"""Errors a user can act on.

Everything the CLI should print as one line (never a traceback) is a `HamtuneError`; the
message says what was wrong, where (file, row, key) and what is allowed.
"""


class HamtuneError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(HamtuneError):
    """A sweep file or command-line value is invalid."""


class DataError(HamtuneError):
    """A dataset, metadata file or image cache is invalid or unusable."""


class ModelError(HamtuneError):
    """A backbone, its weights or its unfreeze depth cannot be used as asked."""


class ExperimentError(HamtuneError):
    """An experiment directory cannot be created, resumed or read."""


class SweepInterrupted(HamtuneError):
    """The user stopped a sweep (Ctrl-C) before its trials ended: its state is saved, `--resume` continues it."""
