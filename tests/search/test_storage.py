"""Where a sweep's Optuna study lives, and a storage that cannot be opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from hamtune.config import parse_sweep
from hamtune.errors import ConfigError
from hamtune.store.experiment import experiment_for
from hamtune.search.storage import JOURNAL_FILE, LOCAL_STUDIES, StudyLocation, kept_study, open_storage, study_location


def test_by_default_the_study_is_a_journal_file_in_the_experiment(tmp_path: Path) -> None:
    sweep = parse_sweep({"name": "s", "storage": str(tmp_path)})
    location = study_location(sweep, experiment_for(sweep.storage, sweep.name))
    assert location == StudyLocation(str(tmp_path / "s" / JOURNAL_FILE), "s")
    assert location.dashboard_command() == f"optuna-dashboard --host 127.0.0.1 {tmp_path / 's' / JOURNAL_FILE}"


def test_an_experiment_on_object_storage_keeps_its_journal_on_the_driver() -> None:
    sweep = parse_sweep({"name": "s", "storage": "s3://bucket/runs"})
    location = study_location(sweep, experiment_for(sweep.storage, sweep.name))
    assert location.storage == str(LOCAL_STUDIES.expanduser() / "s" / JOURNAL_FILE)


def test_a_database_url_holds_the_study_that_optuna_reads_back(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    sweep = parse_sweep({"name": "s", "search": {"storage": url}})
    location = study_location(sweep, experiment_for(sweep.storage, sweep.name))
    assert location == StudyLocation(url, "s")
    optuna.create_study(study_name="s", storage=open_storage(location, "sweep.yaml"), direction="maximize")
    assert location.load().study_name == "s"


@pytest.mark.parametrize(("url", "reason"), [
    ("sqlite:////no/such/dir/studies.db", "unable to open database file"),
    ("postgresql://hamtune@127.0.0.1:1/studies", "Failed to import DB access module for the specified storage URL"),  # no psycopg2 here
])
def test_a_storage_that_cannot_be_opened_is_one_line_naming_the_key(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_storage(StudyLocation(url, "s"), "sweep.yaml")
    message = str(caught.value)
    assert message.startswith(f"sweep.yaml: search.storage: cannot open {url!r}: ")
    assert reason in message and "\n" not in message


def test_a_finished_experiment_names_the_study_it_kept(tmp_path: Path) -> None:
    experiment = experiment_for(str(tmp_path), "s")
    assert kept_study(experiment, {"name": "s"}) is None  # no journal: older than persistent studies
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / JOURNAL_FILE).touch()
    assert kept_study(experiment, {"name": "s"}) == StudyLocation(str(tmp_path / "s" / JOURNAL_FILE), "s")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert kept_study(experiment, {"name": "s", "search": {"storage": url}}) == StudyLocation(url, "s")
    assert kept_study(experiment, {}) is None  # a table without its config cannot name its study
