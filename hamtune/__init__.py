"""hamtune: hyperparameter sweeps for HAM10000 skin-lesion classifiers on Ray Tune + Optuna."""

from hamtune.api import Experiment, load_sweep, open_experiment, run_sweep, train
from hamtune.errors import ConfigError, DataError, ExperimentError, HamtuneError, ModelError
from hamtune.labels import CLASSES
from hamtune.version import __version__

__all__ = [
    "CLASSES",
    "ConfigError",
    "DataError",
    "Experiment",
    "ExperimentError",
    "HamtuneError",
    "ModelError",
    "__version__",
    "load_sweep",
    "open_experiment",
    "run_sweep",
    "train",
]
