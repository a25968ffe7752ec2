"""A sweep's results as a notebook sees them: its tables, its best trials, its Optuna study.

`Experiment` wraps an experiment directory (`hamtune.store.experiment.ExperimentDir`) and
answers from what the sweep wrote there, through the same functions the commands use: the
ranking of `hamtune analyze`, the export of `hamtune export`. Nothing heavy is imported until a
method needs it, so `import hamtune` stays light.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hamtune.errors import ConfigError, ExperimentError
from hamtune.keys import OBJECTIVE

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from hamtune.evaluation.export import ExportResult
    from hamtune.results.analysis import Analysis
    from hamtune.store.experiment import ExperimentDir


class Experiment:
    """One sweep's experiment directory, read afresh on each access (a running sweep shows its progress)."""

    def __init__(self, directory: ExperimentDir) -> None:
        self._directory = directory

    def __repr__(self) -> str:
        return f"Experiment({self.uri!r})"

    @property
    def uri(self) -> str:
        """Where the experiment lives: a local absolute path or a storage URI."""
        return self._directory.uri

    @property
    def name(self) -> str:
        return self._directory.name

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial (its best epoch), best first: `trials.parquet`."""
        from hamtune.store.tables import TRIALS_FILE

        return self._table(TRIALS_FILE)

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per trial and epoch, in the order they were reported: `epochs.parquet`."""
        from hamtune.store.tables import EPOCHS_FILE

        return self._table(EPOCHS_FILE)

    def _table(self, name: str) -> pd.DataFrame:
        from hamtune.store.tables import read_table

        return read_table(f"{self.uri}/{name}")[0]

    def best(self, k: int = 1) -> pd.DataFrame:
        """The `k` best trials by `hamtune.keys.OBJECTIVE`, best first, ranked as `hamtune analyze` ranks
        them: `rank` is what `export(rank=...)` and the commands' `--rank` refer to."""
        from hamtune.results.analysis import rank_trials

        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"best(k): k must be an integer >= 1, got {k!r}")
        ranked, _ = rank_trials(self.trials, OBJECTIVE.name)
        return ranked[ranked["rank"].notna()].head(k).reset_index(drop=True)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study the sweep kept (its journal file, or `search.storage`'s database)."""
        from hamtune.search.storage import kept_study
        from hamtune.store.experiment import CONFIG_FILE

        location = kept_study(self._directory, json.loads(self._directory.read_text(CONFIG_FILE)))
        if location is None:
            raise ExperimentError(f"{self.uri} kept no Optuna study (it was run before hamtune kept one)")
        return location.load()

    def analyze(self, metric: str = OBJECTIVE.name, top: int = 10) -> Analysis:
        """Everything `hamtune analyze` prints: leaderboard, model comparison, per-class scores, importance."""
        from hamtune.results.analysis import analyze

        return analyze([self.uri], metric=metric, top=top)

    def report(self, out: str | os.PathLike[str], metric: str = OBJECTIVE.name, top: int = 10) -> Path:
        """Write `hamtune analyze --out`'s HTML report and PNG plots into `out`; returns the report's path."""
        from hamtune.results.report import write_report

        report, *_ = write_report(self.analyze(metric, top), Path(out))
        return report

    def export(self, out: str | os.PathLike[str], rank: int | None = None, trial_id: str | None = None) -> ExportResult:
        """Write a trial's best-epoch model into `out` (new or empty), as `hamtune export` does: the trial
        at `rank` in `best()` (default 1), or the trial `trial_id`."""
        from hamtune.evaluation.export import export

        return export(self.uri, str(out), rank=rank, trial_id=trial_id)


def open_experiment(path: str | os.PathLike[str]) -> Experiment:
    """The experiment a sweep wrote at `path`: its directory, or a storage URI (s3://, gs://)."""
    from hamtune.evaluation.selection import resolve_experiment

    return Experiment(resolve_experiment(os.fspath(path)))
