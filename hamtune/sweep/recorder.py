"""A Ray Tune callback that keeps the result tables current and tells the user how the sweep goes.

It runs in the driver: every per-epoch report becomes a row of `epochs.parquet`; every finished
or errored trial rewrites both tables atomically, so an interrupted sweep always leaves valid
tables of what has finished. Its state travels with Tune's experiment checkpoint, so a resumed
sweep keeps the rows recorded before the interruption.

A trial whose loss diverged reports one last result carrying `diverged` (its message) instead
of a score. Before any scored epoch it is recorded as DIVERGED, with no metrics in
`trials.parquet`; after one it keeps its best epoch (score and checkpoint), marked `diverged`. When the tables
cannot be written (disk full, storage unwritable) the previous tables stay as they were and the
sweep stops at the end of Tune's step with that one error: it can be resumed once the storage
is writable again, and nothing recorded so far is lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hamtune.config import shown_params
from hamtune.errors import ExperimentError
from hamtune.store.tables import (
    EPOCHS_FILE,
    EPOCHS_SCHEMA,
    FAILED,
    INTERRUPTED,
    METRIC_COLUMNS,
    TRIALS_FILE,
    TRIALS_SCHEMA,
    sort_records,
    to_arrow,
    write_table,
)
from hamtune.keys import DIVERGED_KEY, HYPERPARAMETERS, OBJECTIVE

logger = logging.getLogger(__name__)

_EPOCH_KEYS = ("epoch", "phase", "mode", "train_loss", *METRIC_COLUMNS, "val_confusion_matrix", "train_seconds")


def error_summary(text: str | None) -> str:
    """The last line of an error trace that names the exception, e.g. `TrialDiverged: ...`."""
    if not text:
        return "failed before reporting (no error text available)"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    named = [line for line in lines if ": " in line and line.split(":")[0].replace(".", "").isidentifier()]
    return (named or lines)[-1][:500]


class ResultRecorder(Callback):
    """Collects per-epoch results and writes `trials.parquet` / `epochs.parquet` in `experiment`."""

    def __init__(self, experiment: str, metadata: Mapping[str, Any], resources: Mapping[str, tuple[float, float]],
                 modes: Mapping[str, str]):
        self.experiment = experiment
        self.metadata = dict(metadata)
        self.resources = dict(resources)
        self.modes = dict(modes)
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}
        self._trials: dict[str, dict[str, Any]] = {}
        self._unwritten: ExperimentError | None = None

    # --- Tune hooks -------------------------------------------------------------------------
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get(DIVERGED_KEY):
            self._remember(trial, status="DIVERGED", error=result[DIVERGED_KEY])
            return
        if "epoch" not in result:
            return
        row = {key: result.get(key) for key in _EPOCH_KEYS}
        row["confusion_matrix"] = row.pop("val_confusion_matrix")
        row["node"] = result.get("node_id")
        self._epochs.setdefault(trial.trial_id, {})[int(result["epoch"])] = row
        self._remember(trial, status="RUNNING")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._trials.get(trial.trial_id, {}).get("status") != "DIVERGED":
            self._remember(trial, status="TERMINATED")
        self._finished(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._remember(trial, status="ERROR", error=error_summary(_read(trial.error_file)))
        self._finished(trials, trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # Raised here, not in the trial hooks: Tune turns errors there into trial failures,
        # while an error at the end of a step leaves `Tuner.fit()` as it is.
        if self._unwritten is not None:
            raise _stopped(self._unwritten)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Still running when the sweep ended: interrupted (Ctrl-C); `--resume` continues them from
        # their checkpoints, and Ray's saved state still lists them as running.
        for record in self._trials.values():
            if record["status"] == "RUNNING":
                record["status"] = INTERRUPTED
        try:
            self.write()
        except ExperimentError as error:
            raise _stopped(error) from None

    def get_state(self) -> dict[str, Any]:
        return {"epochs": self._epochs, "trials": self._trials}

    def set_state(self, state: dict[str, Any]) -> None:
        self._epochs, self._trials = state["epochs"], state["trials"]

    # --- tables -----------------------------------------------------------------------------
    def _remember(self, trial: Any, status: str, error: str | None = None) -> None:
        # The best epoch's checkpoint: Ray keeps it by score next to the latest (see the Tuner's
        # CheckpointConfig); before any is registered there is none.
        best = trial.run_metadata.checkpoint_manager.best_checkpoint_results
        checkpoint = best[-1].checkpoint if best else None
        self._trials[trial.trial_id] = {
            "status": status,
            "error": error,
            "params": {key: trial.config.get(key) for key in HYPERPARAMETERS},
            "checkpoint": _location(self.experiment, checkpoint.path) if checkpoint else None,
        }

    def _finished(self, trials: list, trial: Any) -> None:
        rows = self.trial_rows()
        try:
            self.write(rows)
        except ExperimentError as error:
            logger.error("%s", error)
            self._unwritten = error
        record = self._trials[trial.trial_id]
        score = rows[trial.trial_id].get(OBJECTIVE.name)
        outcome = record["error"] if record["status"] in FAILED else (
            "no epoch reported" if score is None else f"{OBJECTIVE.name} {score:.4f}")
        # Where the sweep stands (counts, best so far) is `hamtune.sweep.progress`'s line.
        logger.info("trial %s (%s) %s: %s", trial.trial_id, record["params"]["model"], record["status"].lower(), outcome)

    def trial_rows(self) -> dict[str, dict[str, Any]]:
        """One row per known trial: its best epoch's metrics, hyperparameters and bookkeeping."""
        rows = {}
        for trial_id, record in self._trials.items():
            epochs = self._epochs.get(trial_id, {})
            best = max(epochs.values(), key=_score, default={})
            diverged = record["status"] == "DIVERGED"
            # A trial that diverged after a scored epoch keeps it; one that diverged before stays unranked.
            status = "TERMINATED" if diverged and _score(best) > -math.inf else record["status"]
            model = record["params"]["model"]
            cpus, gpus = self.resources.get(model, (None, None))
            last = epochs[max(epochs)] if epochs else {}
            rows[trial_id] = {
                **{key: best.get(key) for key in METRIC_COLUMNS},
                **self._shown_params(record["params"]),
                "trial_id": trial_id,
                "status": status,
                "mode": self.modes.get(model),
                "diverged": diverged,
                "epochs_completed": max(epochs, default=0),
                "best_epoch": best.get("epoch"),
                "confusion_matrix": best.get("confusion_matrix"),
                "train_seconds": last.get("train_seconds"),
                "cpus": cpus,
                "gpus": gpus,
                "node": last.get("node"),
                "checkpoint": record["checkpoint"],
                "error": record["error"],
            }
        return rows

    def _shown_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's hyperparameters as the tables show them (`shown_params`)."""
        return shown_params(params, self.modes.get(params["model"]))

    def epoch_rows(self) -> list[dict[str, Any]]:
        return [
            {**row, **self._shown_params(self._trials[trial_id]["params"]), "trial_id": trial_id}
            for trial_id, epochs in self._epochs.items() if trial_id in self._trials
            for _, row in sorted(epochs.items())
        ]

    def write(self, rows: dict[str, dict[str, Any]] | None = None) -> None:
        """Rewrite both tables; `rows` are this moment's `trial_rows()` when the caller has them."""
        rows = self.trial_rows() if rows is None else rows
        trials_table = to_arrow(sort_records(rows.values()), TRIALS_SCHEMA)
        write_table(trials_table, _join(self.experiment, TRIALS_FILE), self.metadata)
        write_table(to_arrow(self.epoch_rows(), EPOCHS_SCHEMA), _join(self.experiment, EPOCHS_FILE), self.metadata)


def _stopped(error: ExperimentError) -> ExperimentError:
    return ExperimentError(
        f"{error}. The sweep stopped; once the storage is writable again, continue it with "
        "`hamtune sweep --resume`"
    )


def _score(row: Mapping[str, Any]) -> float:
    value = row.get(OBJECTIVE.name)
    return -math.inf if value is None or math.isnan(value) else value


def _join(experiment: str, name: str) -> str:
    return f"{experiment.rstrip('/')}/{name}"


def _location(experiment: str, path: str) -> str:
    """A checkpoint's fs path as the user can open it: a URI when the experiment is remote."""
    if "://" in experiment and "://" not in path:
        return f"{experiment.split('://')[0]}://{path}"
    return path


def _read(path: str | None) -> str | None:
    return Path(path).read_text(errors="replace") if path and Path(path).exists() else None
