"""What a finished (or running) sweep says: its leaderboard, the model comparison, per-class scores.

Everything here computes DataFrames from the result tables; `hamtune.results.report` prints them, and
`hamtune.results.plots` and `hamtune.results.studyplots` draw them. Tables from several sweeps merge into one with
a `sweep` column. A degenerate table (empty, every trial failed, no scores, an older schema) raises an
`ExperimentError` that says what is wrong, or gives partial results plus a note saying what
is missing, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from hamtune.errors import ConfigError, ExperimentError
from hamtune.results.fidelity import fidelity_table
from hamtune.results.importance import Importance, parameter_importance
from hamtune.labels import CLASSES
from hamtune.search.storage import StudyLocation, kept_study
from hamtune.store.tables import (
    EPOCHS_FILE,
    EPOCHS_SCHEMA,
    FAILED,
    INTERRUPTED,
    METRIC_COLUMNS,
    SCHEMA_VERSION,
    TRIALS_SCHEMA,
    TableLocations,
    locate_tables,
    read_table,
)
from hamtune.keys import HYPERPARAMETERS, OBJECTIVE

logger = logging.getLogger(__name__)

#: Metrics where a smaller value is better; every other metric column is maximised.
LOWER_IS_BETTER = frozenset({"val_loss"})
#: Without these a trials table cannot be analysed at all (besides the chosen metric).
REQUIRED_COLUMNS = ("trial_id", "model")
#: The metrics every summary shows next to the chosen one.
MAIN_METRICS = (OBJECTIVE.name, "val_balanced_accuracy", "val_mel_recall", "val_accuracy", "val_auc_macro")


class Source(NamedTuple):
    """Where one analysed sweep came from: its trials table, the Optuna study it kept (None if it kept
    none), and the search space its config declared (None if the table does not say)."""

    trials_at: str
    study: StudyLocation | None
    space: dict[str, Any] | None


class Results(NamedTuple):
    """Result tables of one or more sweeps, merged; `metadata` maps each sweep to its table metadata."""

    trials: pd.DataFrame
    epochs: pd.DataFrame | None
    metadata: dict[str, dict[str, str]]
    sources: dict[str, Source]
    notes: tuple[str, ...]


class Analysis(NamedTuple):
    """Everything `hamtune analyze` prints and draws, computed once."""

    metric: str
    sweeps: tuple[str, ...]
    trials: pd.DataFrame  # every trial, ranked ones first, with `sweep` and `rank` (NA if unranked)
    epochs: pd.DataFrame | None
    leaderboard: pd.DataFrame
    models: pd.DataFrame
    per_class: pd.DataFrame
    importance: Importance
    fidelity: pd.DataFrame  # per sweep and rung: Spearman of the rung's scores with the final best
    hours_unit: str
    sources: dict[str, Source]
    notes: tuple[str, ...]


# --- reading -----------------------------------------------------------------------------------


def _sweep_name(metadata: dict[str, str], trials_location: str) -> str:
    try:
        return str(json.loads(metadata["config"])["name"])
    except (KeyError, ValueError, TypeError):
        return Path(trials_location.split("://")[-1]).parent.name or trials_location


def _source(metadata: dict[str, str], tables: TableLocations) -> Source:
    try:
        config = dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, TypeError):
        config = {}
    return Source(tables.trials, kept_study(tables.experiment, config), config.get("space"))


def _version_note(metadata: dict[str, str], source: str) -> list[str]:
    version = metadata.get("schema_version")
    if version is None:
        return [f"{source}: no hamtune schema version in its metadata (not written by hamtune?)"]
    if version != SCHEMA_VERSION:
        return [f"{source}: written with table schema version {version}, this hamtune reads version "
                f"{SCHEMA_VERSION}; using the columns both know"]
    return []


def _conform(table: pd.DataFrame, schema: pa.Schema, required: Sequence[str], metadata: dict[str, str],
             source: str) -> tuple[pd.DataFrame, list[str]]:
    """`table` with exactly `schema`'s columns: missing optional ones become empty, with a note."""
    missing = [name for name in schema.names if name not in table.columns]
    absent = [name for name in required if name in missing]
    if absent:
        raise ExperimentError(
            f"{source}: column(s) {', '.join(absent)} missing (schema version "
            f"{metadata.get('schema_version', 'unknown')}); analyze needs at least {', '.join(required)}"
        )
    notes = []
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        notes.append(f"{source}: column(s) {shown} missing (older schema?); shown as empty")
    empty = schema.empty_table().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for name in missing:
        table[name] = pd.Series([None] * len(table), index=table.index, dtype=empty[name].dtype)
    return table[list(schema.names)], notes


def load_results(paths: Sequence[str], metric: str = OBJECTIVE.name) -> Results:
    """Read and merge the result tables at `paths`, each tagged with its sweep's name."""
    if not paths:
        raise ExperimentError(
            "no result table given: pass a trials.parquet, an experiment directory or a URI")
    trials, epochs, metadata, sources, notes = [], [], {}, {}, []
    for path in paths:
        tables = locate_tables(path, check=True)
        trials_at, epochs_at = tables.trials, tables.epochs
        table, meta = read_table(trials_at)
        table, found = _conform(table, TRIALS_SCHEMA, (*REQUIRED_COLUMNS, metric), meta, trials_at)
        notes += _version_note(meta, trials_at) + found
        name = base = _sweep_name(meta, trials_at)
        suffix = 1
        while name in metadata:
            suffix += 1
            name = f"{base}-{suffix}"
        metadata[name] = meta
        sources[name] = _source(meta, tables)
        trials.append(table.assign(sweep=name))
        try:
            per_epoch, epoch_meta = read_table(epochs_at)
        except ExperimentError:
            notes.append(f"{name}: no readable {EPOCHS_FILE} next to {trials_at}: no learning curves, "
                         "trials in table order")
            continue
        per_epoch, found = _conform(per_epoch, EPOCHS_SCHEMA, ("trial_id", "epoch"), epoch_meta, epochs_at)
        notes += found
        epochs.append(per_epoch.assign(sweep=name))
    fingerprints = {(m.get("dataset_fingerprint"), m.get("split_seed")) for m in metadata.values()}
    if len(fingerprints) > 1:
        notes.append("the sweeps were validated on different data or splits (fingerprint/split seed differ): "
                     "compare their scores with care")
    merged_epochs = pd.concat(epochs, ignore_index=True) if epochs else None
    return Results(pd.concat(trials, ignore_index=True), merged_epochs, metadata, sources, tuple(notes))


# --- ranking -----------------------------------------------------------------------------------


def check_metric(metric: str) -> None:
    if metric not in METRIC_COLUMNS:
        raise ConfigError(f"--metric must be one of {', '.join(METRIC_COLUMNS)}, got {metric!r}")


def rank_trials(trials: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """All trials with a `rank` (1 = best by `metric`), unranked ones (failed, no score) last.

    Raises when no trial can be ranked, saying why: the table is empty, every trial failed,
    or no trial has a finite score.
    """
    if trials.empty:
        raise ExperimentError("the trials table holds no trials yet (has a trial of the sweep finished?)")
    failed = trials["status"].isin(FAILED).to_numpy(bool)
    score = pd.to_numeric(trials[metric], errors="coerce").astype(float)
    scored = ~failed & np.isfinite(score.to_numpy())
    notes = []
    if failed.any():
        reasons = trials.loc[failed, "error"].fillna("no error text").value_counts()
        shown = "; ".join(f"{reason} (x{count})" for reason, count in reasons.head(3).items())
        if failed.all():
            raise ExperimentError(
                f"all {len(trials)} trials failed (errored or diverged), nothing to analyse: {shown}")
        notes.append(
            f"{failed.sum()} of {len(trials)} trials failed (errored or diverged) and are not ranked: {shown}")
    running = trials["status"].eq("RUNNING").fillna(False).to_numpy(bool) & scored
    if running.any():
        notes.append(f"{running.sum()} trial(s) still running: their scores are their best epoch so far")
    interrupted = trials["status"].eq(INTERRUPTED).fillna(False).to_numpy(bool) & scored
    if interrupted.any():
        notes.append(f"{interrupted.sum()} trial(s) interrupted (Ctrl-C): their scores are their best epoch so far; "
                     "`hamtune sweep --resume` continues them")
    unscored = ~failed & ~scored
    if unscored.any():
        notes.append(f"{unscored.sum()} trial(s) have no {metric} (NaN or missing) and are not ranked: "
                     f"{', '.join(trials.loc[unscored, 'trial_id'].astype(str).head(5))}")
    if not scored.any():
        raise ExperimentError(f"no trial has a finite {metric}: {'; '.join(notes)}")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    keys = pd.DataFrame({"unranked": ~scored, "score": sign * score.fillna(0.0),
                         "f1": -pd.to_numeric(trials[OBJECTIVE.name], errors="coerce").fillna(-math.inf),
                         "trial_id": trials["trial_id"].astype(str)})
    order = keys.sort_values(["unranked", "score", "f1", "trial_id"], kind="stable").index
    ranked = trials.loc[order].reset_index(drop=True)
    ranks = pd.array(range(1, len(ranked) + 1), dtype="Int64")
    ranked.insert(0, "rank", ranks)
    ranked.loc[~scored[order], "rank"] = pd.NA
    return ranked, notes


def _columns(metric: str, sweeps: int, extra: Sequence[str] = ()) -> list[str]:
    metrics = [metric, *(m for m in MAIN_METRICS if m != metric)]
    return ["rank", *(["sweep"] if sweeps > 1 else []), "trial_id", *HYPERPARAMETERS,
            *extra, *metrics]


def leaderboard(ranked: pd.DataFrame, metric: str, top: int) -> pd.DataFrame:
    """The `top` best ranked trials with their hyperparameters and main metrics."""
    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    rows = ranked[ranked["rank"].notna()].head(top)
    return rows[_columns(metric, ranked["sweep"].nunique(), ("best_epoch",))].reset_index(drop=True)


#: Compute units and the model comparison's column for each.
HOURS_COLUMNS = {"GPU-hours": "gpu_hours", "training hours": "training_hours"}


def hours_unit(trials: pd.DataFrame) -> str:
    """GPU-hours when any trial had a GPU share, else training hours (CPU runs have no GPU-hours)."""
    gpus = pd.to_numeric(trials["gpus"], errors="coerce").fillna(0)
    return "GPU-hours" if gpus.gt(0).any() else "training hours"


def trial_hours(trials: pd.DataFrame, unit: str) -> pd.Series:
    """Each trial's training time in `unit` (GPU share x hours for GPU-hours); 0 where unknown."""
    seconds = pd.to_numeric(trials["train_seconds"], errors="coerce").fillna(0.0).astype(float)
    if unit == "GPU-hours":
        seconds = seconds * pd.to_numeric(trials["gpus"], errors="coerce").fillna(0.0).astype(float)
    return seconds / 3600.0


def compare_models(ranked: pd.DataFrame, metric: str, unit: str) -> pd.DataFrame:
    """Per model: trials, failed, best and median `metric`, its best trial's main scores, compute used."""
    rows = []
    hours = trial_hours(ranked, unit)
    for model, group in ranked.groupby("model", sort=False):
        scored = group[group["rank"].notna()]
        best = scored.iloc[0] if len(scored) else None
        rows.append({
            "model": model,
            "trials": len(group),
            "failed": int(group["status"].isin(FAILED).sum()),
            "best_trial": None if best is None else best["trial_id"],
            f"best_{metric}": np.nan if best is None else float(best[metric]),
            f"median_{metric}": float(pd.to_numeric(scored[metric]).median()) if len(scored) else np.nan,
            **{m: np.nan if best is None else float(best[m]) for m in MAIN_METRICS if m != metric},
            HOURS_COLUMNS[unit]: float(hours[group.index].sum()),
        })
    return pd.DataFrame(rows)


def per_class(ranked: pd.DataFrame) -> pd.DataFrame:
    """Per-class validation precision, recall, F1 and support of each model's best trial (long form)."""
    rows = []
    best = ranked[ranked["rank"].notna()].drop_duplicates("model")
    for _, trial in best.iterrows():
        matrix = trial["confusion_matrix"]
        support = [int(sum(row)) for row in matrix] if _is_matrix(matrix) else [pd.NA] * len(CLASSES)
        for i, name in enumerate(CLASSES):
            rows.append({
                "model": trial["model"], "trial_id": trial["trial_id"], "class": name,
                "support": support[i],
                **{kind: float(trial[f"val_{kind}_{name}"]) for kind in ("precision", "recall", "f1")},
            })
    return pd.DataFrame(rows, columns=["model", "trial_id", "class", "support", "precision", "recall", "f1"])


def _is_matrix(value: Any) -> bool:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return not missing and len(value) == len(CLASSES)


def confusion(trial: pd.Series) -> np.ndarray | None:
    """A trial's 7x7 validation confusion matrix (rows: true classes), None if it has none."""
    matrix = trial["confusion_matrix"]
    return np.array([list(row) for row in matrix], dtype=int) if _is_matrix(matrix) else None


# --- over time -----------------------------------------------------------------------------------


def run_order(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> pd.DataFrame:
    """One sweep's `trials` in the order they first reported an epoch (the row order of
    `epochs.parquet`), so a study rebuilt from them numbers its trials as the sweep ran them;
    trials that never reported, or every trial without that table, follow in trial-id order.
    """
    order = [] if epochs is None else epochs["trial_id"].drop_duplicates().tolist()
    position = {trial: i for i, trial in enumerate(order)}
    keys = trials.assign(_order=trials["trial_id"].map(position).fillna(len(order)))
    return trials.loc[keys.sort_values(["_order", "trial_id"], kind="stable").index]


def learning_curves(epochs: pd.DataFrame | None, board: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows of the leaderboard's trials, in leaderboard order, then by epoch."""
    if epochs is None:
        return EPOCHS_SCHEMA.empty_table().to_pandas().assign(sweep=pd.Series(dtype=object))
    key = board[["trial_id"]].assign(_position=range(len(board)))
    if "sweep" in board:
        key["sweep"] = board["sweep"]
    rows = epochs.merge(key, on=[c for c in ("sweep", "trial_id") if c in key])
    return rows.sort_values(["_position", "epoch"]).drop(columns="_position").reset_index(drop=True)


# --- all of it -----------------------------------------------------------------------------------


def analyze(paths: Sequence[str], metric: str = OBJECTIVE.name, top: int = 10) -> Analysis:
    """Read the sweeps at `paths` and compute every table `hamtune analyze` shows."""
    check_metric(metric)
    results = load_results(paths, metric)
    ranked, notes = rank_trials(results.trials, metric)
    unit = hours_unit(ranked)
    models = ranked["model"].dropna().unique()
    if len(models) == 1:
        notes.append(f"only one model in the table ({models[0]}): no model comparison possible")
    if ranked["rank"].count() == 1:
        notes.append("only one ranked trial: no spread, no history, no importance to speak of")
    spaces = [source.space for source in results.sources.values() if source.space is not None]
    importance = parameter_importance(ranked[ranked["rank"].notna()], metric, spaces,
                                      maximize=metric not in LOWER_IS_BETTER, epochs=results.epochs)
    fidelity, fidelity_notes = fidelity_table(results.epochs, results.metadata, metric,
                                              maximize=metric not in LOWER_IS_BETTER)
    return Analysis(
        metric=metric, sweeps=tuple(results.metadata), trials=ranked, epochs=results.epochs,
        leaderboard=leaderboard(ranked, metric, top), models=compare_models(ranked, metric, unit),
        per_class=per_class(ranked), importance=importance, fidelity=fidelity, hours_unit=unit,
        sources=results.sources, notes=(*results.notes, *notes, *importance.notes, *fidelity_notes),
    )

