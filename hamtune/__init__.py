"""hamtune: hyperparameter sweeps for HAM10000 skin-lesion classifiers on Ray Tune + Optuna."""

from hamtune.errors import ConfigError, DataError, ExperimentError, HamtuneError, ModelError
from hamtune.labels import CLASSES

__version__ = "0.1.0"

__all__ = [
    "CLASSES",
    "ConfigError",
    "DataError",
    "ExperimentError",
    "HamtuneError",
    "ModelError",
    "__version__",
]
