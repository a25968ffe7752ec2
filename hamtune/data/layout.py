"""Read HAM10000 from disk, in the Kaggle or the ISIC 2018 Task 3 layout, into a `DatasetIndex`.

Only `image_id`, `lesion_id` and `dx` survive reading. Every other metadata column (`dx_type`,
`age`, `sex`, `localization`; ISIC's `diagnosis_confirm_type`) is dropped here on purpose and must
never reach a model: `dx_type` leaks the label (follow_up is always nv, confocal always bkl).

Reading collects every fault as a `Problem` with its file and CSV line instead of stopping at the
first, so one run tells the user everything to fix. `scan_dataset` returns them with the usable
rows; `load_dataset` and `read_labels` are strict and raise them in one `DataError`.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hamtune.data.index import INDEX_COLUMNS, DatasetIndex
from hamtune.data.problems import Problem, raise_if_problems
from hamtune.errors import DataError
from hamtune.labels import CLASSES

logger = logging.getLogger(__name__)

KAGGLE_METADATA = "HAM10000_metadata.csv"
ISIC_GROUND_TRUTH = "ISIC2018_Task3_Training_GroundTruth.csv"
ISIC_GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"
ISIC_IMAGES = "ISIC2018_Task3_Training_Input"
#: The layouts, each with the file that identifies it.
LABEL_FILES: dict[str, str] = {"kaggle": KAGGLE_METADATA, "isic2018": ISIC_GROUND_TRUTH}
FORMATS: tuple[str, ...] = ("auto", *LABEL_FILES)
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg"})
#: The ISIC ground-truth columns, mapped by name (their order in the file is not alphabetical).
ISIC_CLASS_COLUMNS: dict[str, str] = {name.upper(): name for name in CLASSES}

_LINE = "_line"  # column holding each row's CSV line number
_LABEL_COLUMNS = ["image_id", "lesion_id", "dx"]


@dataclass
class Scan:
    """What reading a data directory found: usable rows (`INDEX_COLUMNS`), problems and notes.

    Notes are facts worth telling the user that do not stop a run (identical duplicate files).
    """

    format: str
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_format(data_dir: Path | str) -> str:
    """The layout of `data_dir`, told by which label file it holds: "kaggle" or "isic2018"."""
    root = _existing_dir(data_dir)
    found = [fmt for fmt, name in LABEL_FILES.items() if (root / name).is_file()]
    if len(found) == 1:
        return found[0]
    files = [f"{name} ({fmt})" for fmt, name in LABEL_FILES.items()]
    if not found:
        raise DataError(f"cannot tell the layout of {root}: found neither {' nor '.join(files)}")
    raise DataError(f"{root} holds both {' and '.join(files)}: pass format 'kaggle' or 'isic2018'")


def scan_dataset(data_dir: Path | str, format: str = "auto") -> Scan:
    """Read labels and find images in `data_dir`, collecting every problem (never raising for them).

    A directory that is missing or whose layout cannot be told raises `DataError`: nothing can
    be scanned then.
    """
    root = Path(data_dir)
    fmt = _resolve_format(root, format)
    csv = root / LABEL_FILES[fmt]
    usable, labels, problems = _checked_labels(csv, fmt)
    if usable is None:
        return Scan(fmt, _index_table(root, fmt, _empty_table()), problems)
    image_dir = root if fmt == "kaggle" else root / ISIC_IMAGES
    if not image_dir.is_dir():
        problems.append(Problem(str(image_dir), None, "image folder not found"))
        return Scan(fmt, _index_table(root, fmt, _empty_table()), problems)
    files, file_problems, notes = _index_images(image_dir)
    table, match_problems = _match_images(usable, labels, files, csv, image_dir)
    problems += file_problems + match_problems
    return Scan(fmt, _index_table(root, fmt, table), problems, notes)


def load_dataset(data_dir: Path | str, format: str = "auto") -> DatasetIndex:
    """The dataset in `data_dir`, or one `DataError` listing every problem found."""
    scan = scan_dataset(data_dir, format)
    raise_if_problems(scan.problems, f"dataset {data_dir}")
    for note in scan.notes:
        logger.info(note)
    index = DatasetIndex.from_table(Path(data_dir), scan.format, scan.table)
    logger.info(
        "loaded %d images of %d lesions from %s (%s layout)",
        len(index), index.table["lesion_id"].nunique(), data_dir, scan.format,
    )
    return index


def read_labels(path: Path | str, format: str = "auto") -> pd.DataFrame:
    """Columns image_id, lesion_id, dx (sorted by image_id) from labels alone: no image is opened.

    `path` is a data directory or a label CSV: Kaggle metadata under any name, or the ISIC ground
    truth (recognised by its name, or with format "isic2018"), whose groupings CSV must sit beside
    it. Raises one `DataError` listing every problem in the labels.
    """
    path = Path(path)
    _check_format_value(format)
    if path.is_dir():
        fmt = _resolve_format(path, format)
        csv = path / LABEL_FILES[fmt]
    elif path.is_file():
        csv = path
        fmt = format if format != "auto" else ("isic2018" if path.name == ISIC_GROUND_TRUTH else "kaggle")
    else:
        raise DataError(f"{path} does not exist: expected a label CSV or a data directory")
    usable, _, problems = _checked_labels(csv, fmt)
    raise_if_problems(problems, f"labels {csv}")
    return usable.sort_values("image_id").loc[:, _LABEL_COLUMNS].reset_index(drop=True)


# ---- formats ----------------------------------------------------------------------------------


def _check_format_value(format: str) -> None:
    if format not in FORMATS:
        allowed = ", ".join(repr(name) for name in FORMATS)
        raise DataError(f"format must be one of {allowed}, got {format!r}")


def _existing_dir(data_dir: Path | str) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"data directory {root} {what}")
    return root


def _resolve_format(root: Path, format: str) -> str:
    _check_format_value(format)
    _existing_dir(root)
    return detect_format(root) if format == "auto" else format


# ---- labels -----------------------------------------------------------------------------------


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Cells as stripped strings plus a `_line` column; None and a problem if the file is unusable.

    `keep_default_na=False` keeps an id such as "NA" as text; empty cells become "". Blank lines
    are read (so line numbers stay true) and then dropped.
    """
    if not path.is_file():
        return None, [Problem(str(path), None, "file not found")]
    try:
        with warnings.catch_warnings():  # pandas only warns when the first row has extra cells
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False, index_col=False
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, UnicodeError) as error:
        return None, [Problem(str(path), None, f"cannot read as CSV: {error}")]
    frame.columns = frame.columns.str.strip()
    missing = [name for name in required if name not in frame.columns]
    if missing:
        message = f"missing required column(s) {', '.join(missing)}; found: {', '.join(frame.columns)}"
        return None, [Problem(str(path), 1, message)]
    frame = frame.loc[:, list(required)].apply(lambda column: column.str.strip())
    frame[_LINE] = range(2, len(frame) + 2)
    frame = frame.loc[frame[list(required)].ne("").any(axis=1)]
    if frame.empty:
        return None, [Problem(str(path), None, "no data rows (only a header)")]
    return frame, []


def _checked_labels(csv: Path, fmt: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None, list[Problem]]:
    """(usable rows, all rows, problems) of the label file `csv` in layout `fmt`."""
    labels, problems = _kaggle_labels(csv) if fmt == "kaggle" else _isic_labels(csv)
    if labels is None:
        return None, None, problems
    usable, label_problems = _check_labels(labels, str(csv))
    return usable, labels, sorted(problems + label_problems, key=lambda p: (p.file, p.row or 0))


def _kaggle_labels(csv: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    frame, problems = _read_csv(csv, ("lesion_id", "image_id", "dx"))
    return (None if frame is None else frame.loc[:, [*_LABEL_COLUMNS, _LINE]]), problems


def _isic_labels(csv: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Labels from the one-hot ground truth and lesions from the groupings CSV beside it.

    A value that is reported here as a problem is left NaN, so the shared checks skip it.
    """
    truth, problems = _read_csv(csv, ("image", *ISIC_CLASS_COLUMNS))
    groups_csv = csv.with_name(ISIC_GROUPINGS)
    groups, group_problems = _read_csv(groups_csv, ("image", "lesion_id"))
    problems += group_problems
    if truth is None:
        return None, problems
    columns = list(ISIC_CLASS_COLUMNS)
    values = truth[columns].apply(pd.to_numeric, errors="coerce")
    one_hot = values.isin([0.0, 1.0]).all(axis=1) & values.sum(axis=1).eq(1.0)
    for line, cells in zip(truth.loc[~one_hot, _LINE], truth.loc[~one_hot, columns].itertuples(index=False)):
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(columns, cells))
        problems.append(Problem(str(csv), line, f"labels are not exactly one-hot: {shown}"))
    dx = values.loc[one_hot].idxmax(axis=1).map(ISIC_CLASS_COLUMNS).reindex(truth.index)
    lesion = pd.Series(float("nan"), index=truth.index, dtype=object)
    if groups is not None:
        duplicated, dup_problems = _duplicates(groups, "image", str(groups_csv))
        no_lesion = groups["lesion_id"].eq("") & groups["image"].ne("")
        problems += dup_problems + [
            Problem(str(groups_csv), line, f"missing lesion_id for image {image}")
            for image, line in zip(groups.loc[no_lesion, "image"], groups.loc[no_lesion, _LINE])
        ]
        known = groups.loc[~duplicated & groups["image"].ne("")]
        lesion = truth["image"].map(known.set_index("image")["lesion_id"].where(lambda s: s.ne("")))
        absent = truth["image"].ne("") & ~truth["image"].isin(groups["image"])
        problems += [
            Problem(str(csv), line, f"image {image} has no row in {ISIC_GROUPINGS}")
            for image, line in zip(truth.loc[absent, "image"], truth.loc[absent, _LINE])
        ]
    labels = pd.DataFrame({"image_id": truth["image"], "lesion_id": lesion, "dx": dx, _LINE: truth[_LINE]})
    return labels, problems


def _duplicates(frame: pd.DataFrame, column: str, file: str) -> tuple[pd.Series, list[Problem]]:
    """Rows whose non-empty `column` value repeats, and one problem per repeat naming the first row."""
    repeated = frame[column].ne("") & frame[column].duplicated(keep=False)
    first_line = frame.loc[repeated].groupby(column)[_LINE].transform("min")
    later = frame.loc[repeated].loc[frame.loc[repeated, _LINE].ne(first_line)]
    problems = [
        Problem(file, line, f"duplicate {column} {value} (first on line {first})")
        for value, line, first in zip(later[column], later[_LINE], first_line.loc[later.index])
    ]
    return repeated, problems


def _check_labels(labels: pd.DataFrame, file: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Faults shared by both layouts; returns the rows free of them (image_id, lesion_id, dx, line).

    Empty strings are missing values to report; NaN marks a value already reported by a reader.
    """
    image, lesion, dx, line = (labels[name] for name in [*_LABEL_COLUMNS, _LINE])
    allowed = f"allowed: {', '.join(CLASSES)}"
    no_image = image.eq("")
    no_lesion = lesion.eq("")
    bad_dx = dx.notna() & ~dx.isin(CLASSES)
    repeated, problems = _duplicates(labels, "image_id", file)
    problems += [Problem(file, row, "empty image_id") for row in line[no_image]]
    problems += [
        Problem(file, row, f"missing lesion_id for image {image_id}")
        for image_id, row in zip(image[no_lesion], line[no_lesion])
    ]
    problems += [
        Problem(file, row, f"unknown dx {value!r}; {allowed}" if value else f"missing dx; {allowed}")
        for value, row in zip(dx[bad_dx], line[bad_dx])
    ]
    usable = labels.loc[~(no_image | no_lesion | bad_dx | repeated | lesion.isna() | dx.isna())]
    conflicting = usable.groupby("lesion_id")["dx"].transform("nunique").gt(1)
    for lesion_id, rows in usable.loc[conflicting].groupby("lesion_id"):
        where = "; ".join(f"{d} on line(s) {', '.join(map(str, r[_LINE]))}" for d, r in rows.groupby("dx"))
        message = f"lesion_id {lesion_id} has conflicting dx: {where}"
        problems.append(Problem(file, int(rows[_LINE].min()), message))
    return usable.loc[~conflicting], problems


# ---- images -----------------------------------------------------------------------------------


def _empty_table() -> pd.DataFrame:
    columns = {"image_id": str, "lesion_id": str, "dx": str, "path": str, "size_bytes": "int64"}
    return pd.DataFrame(columns=list(columns)).astype(columns)


def _find_images(image_dir: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Every .jpg/.jpeg (any case) under `image_dir`: image_id (the stem), path, size_bytes.

    Hidden files and folders are skipped (`__MACOSX/._*.jpg` resource forks from zips made on a
    Mac are not images). Linked folders are followed, so images may live on another disk.
    """
    problems: list[Problem] = []
    rows = []

    def unreadable(error: OSError) -> None:
        problems.append(Problem(str(error.filename), None, f"cannot list folder: {error.strerror}"))

    for folder, subfolders, names in os.walk(image_dir, onerror=unreadable, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            path = os.path.abspath(os.path.join(folder, name))
            try:
                rows.append((stem, path, os.stat(path).st_size))
            except OSError as error:
                problems.append(Problem(path, None, f"cannot read: {error.strerror}"))
    files = pd.DataFrame(rows, columns=["image_id", "path", "size_bytes"])
    files = files.astype({"image_id": str, "path": str, "size_bytes": "int64"})
    return files.sort_values("path", ignore_index=True), problems


def _identical(paths: list[str]) -> bool:
    """Whether every file in `paths` (all of one size) holds the bytes of the first one."""
    try:
        first = Path(paths[0]).read_bytes()
        return all(Path(path).read_bytes() == first for path in paths[1:])
    except OSError:
        return False


def _index_images(image_dir: Path) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """One file per image_id; identical copies folded (noted), differing copies reported.

    Copies are compared by size first and byte for byte only when sizes agree (reading both is
    cheaper than hashing them: the Kaggle zip has 10,015 such pairs). Returns the files with a
    `conflict` column, True for ids whose copies differ: unusable, but neither missing nor stray.
    """
    files, problems = _find_images(image_dir)
    copies = files.loc[files["image_id"].duplicated(keep=False)].groupby("image_id")
    paths = copies["path"].agg(list)
    same_size = copies["size_bytes"].nunique().eq(1)
    with ThreadPoolExecutor() as pool:  # file reads release the GIL
        identical = pd.Series(list(pool.map(_identical, paths[same_size])), index=paths.index[same_size])
    identical = identical.reindex(paths.index, fill_value=False).astype(bool)
    for image_id, group in paths[~identical].items():
        message = f"differs from {', '.join(group[1:])} or cannot be read (same image_id {image_id})"
        problems.append(Problem(group[0], None, f"{message}: keep one"))
    notes = []
    if identical.any():
        folded = paths[identical]
        notes.append(
            f"{len(folded)} image ids have identical copies (e.g. {' = '.join(folded.iloc[0])}); "
            f"using one file each ({folded.map(len).sum() - len(folded)} copies ignored)"
        )
    conflict = files["image_id"].isin(paths.index[~identical])
    files = files.assign(conflict=conflict).drop_duplicates("image_id", keep="first")
    return files, problems, notes


def _match_images(
    usable: pd.DataFrame, labels: pd.DataFrame, files: pd.DataFrame, csv: Path, image_dir: Path
) -> tuple[pd.DataFrame, list[Problem]]:
    """Usable rows joined to their file; problems for listed-but-missing images and strays."""
    merged = usable.merge(files, on="image_id", how="left", validate="one_to_one")
    missing = merged["path"].isna()
    where = f"{image_dir.name}/"
    problems = [
        Problem(str(csv), line, f"image {image_id} is listed but no {image_id}.jpg was found under {where}")
        for image_id, line in zip(merged.loc[missing, "image_id"], merged.loc[missing, _LINE])
    ]
    strays = files.loc[~files["image_id"].isin(labels["image_id"]), "path"]
    problems += [Problem(path, None, f"image file is not listed in {csv.name}") for path in strays]
    table = merged.loc[~missing & merged["conflict"].ne(True)]
    return table.astype({"size_bytes": "int64"}), problems


def _index_table(root: Path, fmt: str, table: pd.DataFrame) -> pd.DataFrame:
    """`table` normalised to `INDEX_COLUMNS` exactly as `DatasetIndex` holds it."""
    return DatasetIndex.from_table(root, fmt, table.loc[:, [c for c in INDEX_COLUMNS if c != "label"]]).table
