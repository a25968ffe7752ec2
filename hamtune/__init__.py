"""hamtune: hyperparameter sweeps for HAM10000 skin-lesion classifiers on Ray Tune + Optuna."""

from hamtune.errors import ConfigError, DataError, ExperimentError, HamtuneError, ModelError
from hamtune.labels import CLASSES
from hamtune.version import __version__

__all__ = [
    "CLASSES",
    "ConfigError",
    "DataError",
    "ExperimentError",
    "HamtuneError",
    "ModelError",
    "__version__",
]
