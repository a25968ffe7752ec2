"""Lesion-grouped, class-stratified train/val/test splits.

Views of one lesion on both sides of a split inflate every metric (see the project notes:
78.9 % → 72.1 % accuracy once validation was lesion-clean), so every lesion lives in exactly
one split, and each split keeps the class mix of the whole set.
"""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.model_selection import StratifiedGroupKFold

from hamtune.errors import ConfigError, DataError
from hamtune.keys import SPLITS
from hamtune.labels import CLASSES
from hamtune.store.atomic import AtomicWrite

log = logging.getLogger(__name__)

#: Columns of a split table and of a split CSV, in order.
SPLIT_COLUMNS: tuple[str, ...] = ("image_id", "lesion_id", "dx", "split")
#: Lesions are dealt into this many equal folds; split fractions are whole folds (5 % steps).
FOLDS: int = 20
#: Accepted values of `split_dataset(rare=...)`.
RARE_POLICIES: tuple[str, ...] = ("error", "train")


def split_dataset(
    labels: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0, rare: str = "error"
) -> pd.DataFrame:
    """Assign every image to train, val or test, grouped by `lesion_id` and stratified by `dx`.

    scikit-learn's `StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed)` deals the
    lesions into `FOLDS` = 20 folds of ~5 % with the same class mix; test is the first
    `round(test * 20)` folds, val the next `round(val * 20)`, train the rest. Fractions are
    therefore honoured to the nearest 5 %, and one that rounds to no fold is refused.

    A class must have lesions in every split to be scored there. One with fewer lesions than
    splits never does, and one with fewer than 20 lesions may miss a split (the folds it lands
    in are chosen by the balancing, not by us); 20 or more always reach every split. Such
    classes are "rare": `rare="error"` raises a `DataError` naming each with its counts;
    `rare="train"` puts all their lesions in train (none of their images is then evaluated)
    and logs a warning naming them.

    Returns columns `SPLIT_COLUMNS`, sorted by `image_id`. Extra input columns are ignored.
    """
    n_val, n_test = _folds_for(val, test)
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
        raise ConfigError(f"`seed` must be an int in [0, 2**32 - 1] (numpy's seed range), got {seed!r}")
    if rare not in RARE_POLICIES:
        raise ConfigError(f"`rare` must be one of {list(RARE_POLICIES)}, got {rare!r}")
    table = _validated_labels(labels)

    fold = np.empty(len(table), dtype=np.int64)
    with warnings.catch_warnings():
        # Classes smaller than FOLDS are expected; they are reported below as rare if they miss a split.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            for i, fold_rows in enumerate(lesion_folds(table["dx"], table["lesion_id"], FOLDS, seed)):
                fold[fold_rows] = i
        except ValueError as exc:  # too few lesions, or every class smaller than FOLDS
            raise DataError(
                f"cannot deal {len(table)} images of {table['lesion_id'].nunique()} lesions into {FOLDS} folds: {exc}"
            ) from exc
    split = np.select([fold < n_test, fold < n_test + n_val], ["test", "val"], "train")
    table = table.assign(split=split)

    missing = _classes_missing_a_split(table)
    if missing:
        described = "; ".join(f"{dx} ({desc})" for dx, desc in missing.items())
        if rare == "error":
            raise DataError(
                f"class(es) too rare to reach every split: {described}. A class needs lesions in "
                f"train, val and test ({FOLDS} lesions always suffice at {100 // FOLDS} % fold "
                f"resolution); pass rare='train' to keep these classes in train only, or use more data"
            )
        table.loc[table["dx"].isin(list(missing)), "split"] = "train"
        log.warning("kept in train only, too rare to reach every split: %s", described)
    return table


def lesion_folds(labels: ArrayLike, lesions: ArrayLike, folds: int, seed: int) -> list[np.ndarray]:
    """Row indices of each of `folds` lesion-disjoint, label-stratified folds, in scikit-learn's order.

    `StratifiedGroupKFold(folds, shuffle=True, random_state=seed)`: every lesion in exactly one
    fold, each fold with the class mix of the whole as far as whole lesions allow. The
    train/val/test split and cross-validation (`hamtune.evaluation.folds`) both deal lesions so.
    """
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(labels)), labels, groups=lesions)]


def _folds_for(val: float, test: float) -> tuple[int, int]:
    """How many of the `FOLDS` folds val and test get; refuse fractions that leave a split empty."""
    folds = {}
    for name, value in (("val", val), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
            raise ConfigError(f"`{name}` must be in (0, 1), got {value!r}")
        folds[name] = round(value * FOLDS)
        if folds[name] == 0:
            raise ConfigError(
                f"`{name}`={value!r} rounds to 0 of {FOLDS} folds (splits come in {100 // FOLDS} % steps); "
                f"use at least {1 / FOLDS:g}"
            )
    if val + test >= 1.0 or folds["val"] + folds["test"] >= FOLDS:
        raise ConfigError(
            f"`val + test` must leave data for train (below 1 and at most {1 - 1 / FOLDS:g} in "
            f"{100 // FOLDS} % steps), got val={val!r}, test={test!r}"
        )
    return folds["val"], folds["test"]


def _validated_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """The image_id/lesion_id/dx columns, sorted by image_id; refuse what cannot be split."""
    absent = [c for c in SPLIT_COLUMNS[:3] if c not in labels.columns]
    if absent:
        raise DataError(f"labels lack column(s) {absent}; need {list(SPLIT_COLUMNS[:3])}")
    table = labels.loc[:, list(SPLIT_COLUMNS[:3])].astype(str)
    table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
    unknown = sorted(set(table["dx"]) - set(CLASSES))
    if unknown:
        raise DataError(f"labels hold unknown dx value(s) {unknown}; allowed: {list(CLASSES)}")
    dx_per_lesion = table.groupby("lesion_id")["dx"].unique()
    mixed = dx_per_lesion[dx_per_lesion.map(len) > 1]
    if not mixed.empty:
        shown = ", ".join(f"{lesion} ({'/'.join(sorted(dxs))})" for lesion, dxs in mixed.items())
        raise DataError(f"lesion(s) with more than one dx cannot be split by lesion: {shown}")
    return table


def _classes_missing_a_split(table: pd.DataFrame) -> dict[str, str]:
    """Each class absent from some split, with its lesion/image counts and the splits it misses."""
    missing = {}
    for dx, rows in table.groupby("dx"):
        absent = [s for s in SPLITS if s not in set(rows["split"])]
        if absent:
            missing[str(dx)] = (
                f"{rows['lesion_id'].nunique()} lesion(s), {len(rows)} image(s); none in {', '.join(absent)}"
            )
    return missing


def write_split(split: pd.DataFrame, path: Path) -> None:
    """Write the split CSV atomically: a reader sees the old file or the whole new one, never half."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: the split is written to a CSV file, e.g. {path / 'split.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writing = AtomicWrite(path, "w", newline="")
    except OSError as exc:
        raise ConfigError(f"cannot write the split file {path}: {exc}") from exc
    with writing as handle:
        split.loc[:, list(SPLIT_COLUMNS)].to_csv(handle, index=False)


def read_split(path: Path) -> pd.DataFrame:
    """Read a split CSV written by `write_split`, refusing anything that is not a valid split."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from exc
    if tuple(table.columns) != SPLIT_COLUMNS:
        raise DataError(f"split file {path} has columns {list(table.columns)}; expected {list(SPLIT_COLUMNS)}")
    for column, allowed in (("split", SPLITS), ("dx", CLASSES)):
        bad = np.flatnonzero(~table[column].isin(allowed))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"split file {path}, line {row + 2}: {column} {table[column].iat[row]!r} is not one of {list(allowed)}"
            )
    for column in ("image_id", "lesion_id"):
        empty = np.flatnonzero(table[column].str.strip() == "")
        if empty.size:
            raise DataError(f"split file {path}, line {int(empty[0]) + 2}: empty {column}")
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"split file {path} lists image_id {duplicated.iat[0]!r} more than once")
    splits_per_lesion = table.groupby("lesion_id")["split"].nunique()
    leaking = splits_per_lesion[splits_per_lesion > 1]
    if not leaking.empty:
        raise DataError(f"split file {path} puts lesion {leaking.index[0]!r} in more than one split")
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)


def split_summary(split: pd.DataFrame) -> pd.DataFrame:
    """Images, lesions and class share per class (rows, plus `all`) and split (column groups).

    `{split}_share` is the class's share of that split's images; on the `all` row it is the
    split's share of all images, so one table shows both stratification and split sizes.
    """
    columns = {}
    for name in SPLITS:
        rows = split[split["split"] == name]
        images = rows.groupby("dx").size().reindex(CLASSES, fill_value=0)
        lesions = rows.groupby("dx")["lesion_id"].nunique().reindex(CLASSES, fill_value=0)
        total = len(rows)
        columns[f"{name}_images"] = [*images, total]
        columns[f"{name}_lesions"] = [*lesions, rows["lesion_id"].nunique()]
        columns[f"{name}_share"] = [*(images / max(total, 1)), total / max(len(split), 1)]
    return pd.DataFrame(columns, index=pd.Index([*CLASSES, "all"], name="dx"))
