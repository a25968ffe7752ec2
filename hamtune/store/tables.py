"""The sweep's result tables: schema declared once, written atomically, read back with checks.

`trials.parquet` holds one row per trial (its best epoch), `epochs.parquet` one row per trial
and epoch. Both are rewritten whole each time a trial finishes; readers never see a partial
file (local: temp file + rename, `hamtune.store.atomic`; object stores: a single object upload).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hamtune.errors import ExperimentError
from hamtune.faults import inject
from hamtune.store.atomic import AtomicWrite
from hamtune.store.experiment import ExperimentDir, experiment_at
from hamtune.metrics import SCALAR_METRICS
from hamtune.keys import HYPERPARAMETERS, OBJECTIVE

SCHEMA_VERSION = "2"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
#: `status` of trials without a usable score: errored after their retries, or diverged (NaN loss).
FAILED: tuple[str, ...] = ("ERROR", "DIVERGED")
#: `status` of trials still running when the sweep was stopped (Ctrl-C): `--resume` continues them.
INTERRUPTED = "INTERRUPTED"

#: Each hyperparameter's column type (`hamtune.keys.HYPERPARAMETERS` gives the order).
PARAMETER_TYPES: dict[str, pa.DataType] = {
    name: pa.string() if name == "model" else pa.int64() if name == "unfreeze_depth" else pa.float64()
    for name in HYPERPARAMETERS
}
METRIC_COLUMNS: tuple[str, ...] = tuple(f"val_{key}" for key in SCALAR_METRICS)
_METRICS = [pa.field(name, pa.float64()) for name in METRIC_COLUMNS]
_CONFUSION = pa.field("confusion_matrix", pa.list_(pa.list_(pa.int64())))
_PARAMS = [pa.field(name, kind) for name, kind in PARAMETER_TYPES.items()]

TRIALS_SCHEMA = pa.schema([
    pa.field("trial_id", pa.string()),
    pa.field("status", pa.string()),
    pa.field("mode", pa.string()),  # "scratch" or "transfer" (hamtune.config.SCRATCH / TRANSFER)
    *_PARAMS,
    pa.field("epochs_completed", pa.int64()),
    pa.field("best_epoch", pa.int64()),
    *_METRICS,
    _CONFUSION,
    pa.field("train_seconds", pa.float64()),
    pa.field("cpus", pa.float64()),
    pa.field("gpus", pa.float64()),
    pa.field("node", pa.string()),
    pa.field("checkpoint", pa.string()),  # the best epoch's checkpoint
    pa.field("diverged", pa.bool_()),  # its loss became NaN: unranked if before any scored epoch
    pa.field("error", pa.string()),
])

EPOCHS_SCHEMA = pa.schema([
    pa.field("trial_id", pa.string()),
    pa.field("mode", pa.string()),
    *_PARAMS,
    pa.field("epoch", pa.int64()),
    pa.field("phase", pa.int64()),  # 0 from scratch, 1 head only, 2 fine-tuning (hamtune.training.trial)
    pa.field("train_loss", pa.float64()),
    *_METRICS,
    _CONFUSION,
    pa.field("train_seconds", pa.float64()),
    pa.field("node", pa.string()),
])


def is_ranked(row: Mapping[str, Any]) -> bool:
    """Whether a trial competes for the top: it has a score and did not fail.

    An errored trial keeps the metrics of its last good epoch, but it never ranks above a
    trial that finished.
    """
    score = row.get(OBJECTIVE.name)
    return not (score is None or math.isnan(score) or row.get("status") in FAILED)


def sort_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best trial first by validation macro F1; failed trials and those without a score last."""

    def key(row: Mapping[str, Any]) -> tuple[bool, float, str]:
        ranked = is_ranked(row)
        return (not ranked, -row[OBJECTIVE.name] if ranked else 0.0, str(row.get("trial_id")))

    return sorted(records, key=key)


def to_arrow(records: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Records → a table of exactly `schema` (missing keys become nulls, extra keys are dropped)."""
    rows = list(records)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


class TableLocations(NamedTuple):
    """Where one sweep's result tables are, and the experiment directory that holds them."""

    trials: str
    epochs: str
    experiment: ExperimentDir


def locate_tables(location: str, check: bool = False) -> TableLocations:
    """The tables of what a user names: an experiment directory or its trials.parquet, as a path
    (`~` allowed) or a URI; the epochs table is the one next to the trials table.

    A local path is a directory if it is one, else a table if it exists or ends in `.parquet`; a
    URI is a table if it ends in `.parquet`. With `check`, a local path that does not exist, or a
    directory without a trials table, is refused here, saying what to give; without it, reading
    the missing table says so.
    """
    if "://" in location:
        if location.rstrip("/").endswith(".parquet"):
            trials, directory = location, location.rsplit("/", 1)[0]
        else:
            directory = location.rstrip("/")
            trials = f"{directory}/{TRIALS_FILE}"
        return TableLocations(trials, f"{directory}/{EPOCHS_FILE}", experiment_at(directory))
    local = Path(location).expanduser()
    if check and not local.exists():
        raise ExperimentError(
            f"{location}: no such file or directory (give a trials.parquet or an experiment directory)")
    if local.is_dir() or (not local.exists() and local.suffix != ".parquet"):
        if check and not (local / TRIALS_FILE).is_file():
            raise ExperimentError(f"{location}: no {TRIALS_FILE} in this directory; is it a hamtune experiment?")
        directory, trials = local, local / TRIALS_FILE
    else:
        directory, trials = local.parent, local
    return TableLocations(str(trials), str(directory / EPOCHS_FILE), experiment_at(str(directory)))


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())


def write_table(table: pa.Table, location: str, metadata: Mapping[str, Any]) -> None:
    """Write `table` to `location` (path or URI) atomically, with hamtune's schema metadata.

    A failure (disk full, permission, network) leaves the previous file intact and raises an
    ExperimentError naming the location.
    """
    meta = {"hamtune.schema_version": SCHEMA_VERSION, **{
        f"hamtune.{key}": value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in metadata.items()
    }}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    fs, path = _filesystem(location)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            with AtomicWrite(path) as handle:
                pq.write_table(table, handle)
                inject("write_table", file=os.path.basename(path), rows=table.num_rows)
        else:
            with fs.open_output_stream(path) as handle:
                pq.write_table(table, handle)
    except OSError as error:
        raise ExperimentError(f"could not write {location}: {error}; the previous table is intact") from error


def read_table(location: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a result table and hamtune's metadata from it (keys without the `hamtune.` prefix)."""
    fs, path = _filesystem(location)
    try:
        table = pq.read_table(path, filesystem=fs)
    except FileNotFoundError as error:
        raise ExperimentError(f"{location}: no such result table") from error
    except (OSError, pa.ArrowInvalid) as error:
        raise ExperimentError(f"{location}: not a readable Parquet table ({error})") from error
    raw = table.schema.metadata or {}
    metadata = {
        key.decode().removeprefix("hamtune."): value.decode()
        for key, value in raw.items() if key.startswith(b"hamtune.")
    }
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), metadata
