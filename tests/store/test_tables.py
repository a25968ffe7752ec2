"""Result tables: one declared schema, NaN-last ordering, integer columns, atomic writes."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hamtune.store import tables
from hamtune.errors import ExperimentError
from hamtune.labels import CLASSES
from hamtune.store.tables import (
    EPOCHS_SCHEMA,
    METRIC_COLUMNS,
    TRIALS_SCHEMA,
    read_table,
    sort_records,
    to_arrow,
    write_table,
)


def trial(trial_id: str, score: float | None, **extra: object) -> dict:
    return {"trial_id": trial_id, "status": "TERMINATED", "model": "densenet121", "unfreeze_depth": 3,
            "epochs_completed": 4, "best_epoch": 2, "val_macro_f1": score, **extra}


def test_schema_declares_every_per_class_metric() -> None:
    for kind in ("precision", "recall", "f1"):
        for name in CLASSES:
            assert f"val_{kind}_{name}" in METRIC_COLUMNS
    assert set(METRIC_COLUMNS) <= set(TRIALS_SCHEMA.names) and set(METRIC_COLUMNS) <= set(EPOCHS_SCHEMA.names)


def test_sort_puts_best_first_and_unscored_last() -> None:
    rows = [trial("a", 0.2), trial("b", None, status="ERROR"), trial("c", 0.5), trial("d", math.nan),
            trial("e", 0.5)]
    assert [r["trial_id"] for r in sort_records(rows)] == ["c", "e", "a", "b", "d"]


def test_round_trip_keeps_integers_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "trials.parquet"
    rows = [trial("a", 0.4), trial("b", None, status="ERROR", error="TrialDiverged: loss nan",
                                   unfreeze_depth=None, best_epoch=None, epochs_completed=0)]
    write_table(to_arrow(rows, TRIALS_SCHEMA), str(path), {"split_seed": 7, "config": {"name": "x"}})
    frame, meta = read_table(str(path))
    assert frame["unfreeze_depth"].dtype == "Int64" and frame["best_epoch"].tolist()[0] == 2
    assert pd.isna(frame["best_epoch"].tolist()[1]) and frame.loc[1, "error"] == "TrialDiverged: loss nan"
    assert meta["split_seed"] == "7" and meta["config"] == '{"name": "x"}' and meta["schema_version"] == "2"
    assert pq.read_schema(path).field("epochs_completed").type == "int64"


def test_a_failed_write_leaves_the_previous_table_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trials.parquet"
    write_table(to_arrow([trial("a", 0.4)], TRIALS_SCHEMA), str(path), {})

    def disk_full(table: object, handle: object) -> None:  # half a file, then ENOSPC
        handle.write(b"PAR1" + b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tables.pq, "write_table", disk_full)
    with pytest.raises(ExperimentError, match="could not write .*No space left.*previous table is intact"):
        write_table(to_arrow([trial("a", 0.9)], TRIALS_SCHEMA), str(path), {})
    monkeypatch.undo()
    assert read_table(str(path))[0]["val_macro_f1"].tolist() == [0.4]
    assert [p.name for p in tmp_path.iterdir()] == ["trials.parquet"]  # no temp file left behind


def test_reading_something_that_is_not_a_table_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ExperimentError, match="not a readable Parquet table"):
        read_table(str(tmp_path / "x.parquet"))
    with pytest.raises(ExperimentError, match="no such result table"):
        read_table(str(tmp_path / "missing.parquet"))
