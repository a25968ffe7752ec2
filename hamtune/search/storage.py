"""Where a sweep's Optuna study lives: persistent storage, so it outlives the driver.

Ray's OptunaSearch keeps its study in memory unless it is given a storage. hamtune gives every
sweep one: by default an Optuna journal file in the experiment directory (an append-only log
that works on NFS too, readable by `optuna.load_study` and optuna-dashboard while the sweep
runs); `search.storage` names a database instead (SQLite on one machine, PostgreSQL or MySQL
for a team). The study is named after the sweep, and each Optuna trial carries its Ray trial
id as the user attribute `hamtune.keys.RAY_TRIAL_ATTR`, the key that joins it to the result tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hamtune.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from hamtune.config import SweepConfig
    from hamtune.store.experiment import ExperimentDir

JOURNAL_FILE = "optuna.journal"
LOCAL_STUDIES = Path("~/.cache/hamtune/studies")


@dataclass(frozen=True)
class StudyLocation:
    """A study's storage as users name it: a journal file path or a database URL, and the study name."""

    storage: str
    name: str

    @property
    def is_journal(self) -> bool:
        return "://" not in self.storage

    def open(self) -> BaseStorage:
        """Optuna's storage object (Ray's OptunaSearch takes an object, not a URL)."""
        import optuna
        from optuna.storages.journal import JournalFileBackend

        if self.is_journal:
            return optuna.storages.JournalStorage(JournalFileBackend(self.storage))
        return optuna.storages.RDBStorage(self.storage)

    def load(self) -> optuna.Study:
        import optuna

        return optuna.load_study(study_name=self.name, storage=self.open())

    def dashboard_command(self) -> str:
        """The command that opens the study in optuna-dashboard, on this machine only."""
        return f"optuna-dashboard --host 127.0.0.1 {self.storage}"


def study_location(sweep: SweepConfig, experiment: ExperimentDir) -> StudyLocation:
    """`search.storage` if set, else a journal file in the experiment directory.

    A journal is a local (or NFS) file: for an experiment on object storage (s3://, gs://) the
    driver keeps it under `~/.cache/hamtune/studies`, and a team sets `search.storage` instead.
    """
    return _location(sweep.search.storage, sweep.name, experiment)


def _location(storage: str | None, name: str, experiment: ExperimentDir) -> StudyLocation:
    if storage:
        return StudyLocation(storage, name)
    if experiment.is_remote:
        directory = LOCAL_STUDIES.expanduser() / name
    else:
        directory = Path(experiment.uri.removeprefix("file://"))
    return StudyLocation(str(directory / JOURNAL_FILE), name)


def kept_study(experiment: ExperimentDir, config: Mapping[str, Any]) -> StudyLocation | None:
    """Where a sweep with this saved config kept its study, by the rule above; None when it kept none
    (an experiment older than persistent studies has no journal file). A database is not opened here.
    """
    name = config.get("name")
    if not isinstance(name, str):
        return None
    location = _location((config.get("search") or {}).get("storage"), name, experiment)
    if location.is_journal and not Path(location.storage).is_file():
        return None
    return location


def open_storage(location: StudyLocation, source: str) -> BaseStorage:
    """Open the study's storage before any trial starts; a bad URL is one line naming the key."""
    if location.is_journal:
        Path(location.storage).parent.mkdir(parents=True, exist_ok=True)
    try:
        return location.open()
    except Exception as error:  # SQLAlchemy and drivers raise their own types for bad URLs
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{source}: search.storage: cannot open {location.storage!r}: {reason}") from None
