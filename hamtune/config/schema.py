"""What every key of a sweep file may be: one `Field` (default + constraint) per key.

Constraints are declared as data, so every violation is reported in one shape by `parsing`,
and the allowed values in each message come from the same place as the check.
"""

from __future__ import annotations

from typing import Any

from hamtune.config.constraints import REQUIRED, Field, GpuCount, Interval, Later, Location, Nullable, OneOf, Text
from hamtune.config.types import AUGMENTATIONS, BACKENDS, LR_SCHEDULES, PRECISION_POLICIES, SAMPLERS

#: What one model's `training.weights` may be.
WEIGHTS_RULE = "'imagenet', 'none' or the path of an existing weights file"
#: `search.storage`: where the Optuna study lives when not in the default journal file.
STUDY_URL_RULE = "an Optuna storage URL (sqlite:///FILE, postgresql://USER@HOST/DB or mysql://USER@HOST/DB)"
#: `tracking.mlflow`: where MLflow keeps runs (its file store needs MLFLOW_ALLOW_FILE_STORE since MLflow 3).
MLFLOW_RULE = "an MLflow tracking URI (sqlite:///FILE for a local store, http(s)://HOST:PORT for a server)"
#: SQLAlchemy URL schemes Optuna's RDBStorage supports (a driver may follow: `postgresql+psycopg2`).
URL_SCHEMES = ("sqlite", "postgresql", "mysql")
URL_PATTERN = rf"({'|'.join(URL_SCHEMES)})(\+\w+)?://.*"

SEED = Interval(int, 0, 2**32 - 1)  # numpy's seed range
#: `search.seed`: each trial trains with it plus an offset below 10_000 (`hamtune.training.trial.trial_seed`),
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
#: What each float hyperparameter may be: the bounds of its range in a sweep file's space, and of
#: the value of a configuration trained on its own (`hamtune.config.parse_point`).
DOMAINS: dict[str, Interval] = {
    "learning_rate": Interval(float, 0, None, "neither"),
    "dropout": Interval(float, 0, 1, "left"),
    "class_weight_power": Interval(float, 0, None),
}
SCHEDULER_NONE = "none"


def _float_range(low: float, high: float, bound: Interval, log: bool = False) -> dict[str, Field]:
    return {"low": Field(low, bound), "high": Field(high, bound), "log": Field(log, BOOL)}


def schema(models: tuple[str, ...]) -> dict[str, Any]:
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
            "learning_rate": _float_range(1.0e-5, 1.0e-2, DOMAINS["learning_rate"], log=True),
            "dropout": _float_range(0.0, 0.5, DOMAINS["dropout"]),
            "class_weight_power": _float_range(0.0, 1.0, DOMAINS["class_weight_power"]),
            "unfreeze_depth": Field(None, Later("a mapping of each model in space.models to {low, high}")),
        },
        "search": {
            "seed": Field(0, SEARCH_SEED),
            "trials": Field(64, POSITIVE_INT),
            "max_concurrent": Field(4, POSITIVE_INT),
            "points_to_evaluate": Field([], Later("a list of {model, learning_rate, dropout, ...} mappings")),
            "sampler": Field("tpe", OneOf(SAMPLERS)),
            "storage": Field(None, Nullable(Text(URL_PATTERN, STUDY_URL_RULE))),
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
            "warm_trials": Field(True, BOOL),
            "seed_per_trial": Field(False, BOOL),
            # Measured on the dev set (benchmarks/stabilisers.py, 3 seeds): the cosine schedule with
            # weight decay 0.05 raised the recipe's best val macro F1 by 0.066 and cut its swing to
            # 0.35x; weight averaging cut the swing further but lowered the best (README).
            "lr_schedule": Field("cosine", OneOf(LR_SCHEDULES)),
            "lr_warmup_epochs": Field(1, COUNT),
            "weight_decay": Field(0.05, Interval(float, 0, None)),
            "weight_averaging": Field(False, BOOL),
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
