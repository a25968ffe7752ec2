"""The cluster checks of `run_sweep`: a head-local path is refused before any trial runs, a malformed
`--address` before Ray starts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from hamtune.sweep.cluster import SHARED_STORAGE_ENV, check_address, check_cluster_paths
from hamtune.config import parse_sweep
from hamtune.errors import ConfigError, ExperimentError
from hamtune.store.experiment import experiment_for


def _sweep(storage: str, data_dir: str | None = None):
    return parse_sweep({"name": "s", "storage": storage, "data": {"dir": data_dir},
                        "space": {"models": ["densenet121"]}})


def _check(sweep, hosts: set[str], worker_types: list[str]) -> None:
    check_cluster_paths(sweep, experiment_for(sweep.storage, sweep.name), hosts, worker_types)


@pytest.fixture(autouse=True)
def _no_shared_storage_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)


def test_a_local_path_is_fine_when_every_node_is_on_one_host(tmp_path: Path) -> None:
    _check(_sweep(str(tmp_path)), {"127.0.0.1"}, [])


@pytest.mark.parametrize("storage", ["{tmp}", "file://{tmp}"])
def test_a_local_path_on_several_machines_is_refused(tmp_path: Path, storage: str) -> None:
    sweep = _sweep(storage.format(tmp=tmp_path))
    with pytest.raises(ExperimentError, match=(
        rf"storage '{tmp_path}' is a local path, but this sweep runs on 2 machines \(10\.0\.0\.1, 10\.0\.0\.2\): "
        r"a worker's checkpoints .* Use an s3:// or gs:// URI \(--storage\), or a path every node mounts "
        r"\(NFS\) and set HAMTUNE_SHARED_STORAGE=1"
    )):
        _check(sweep, {"10.0.0.1", "10.0.0.2"}, [])


def test_a_local_path_is_refused_on_a_cluster_that_has_no_worker_yet(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"runs on a cluster that may add gpu_worker nodes"):
        _check(_sweep(str(tmp_path)), {"10.0.0.1"}, ["gpu_worker"])


def test_object_storage_or_a_declared_shared_mount_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(_sweep("s3://bucket/runs"), {"10.0.0.1", "10.0.0.2"}, ["gpu_worker"])
    _check(_sweep("gs://bucket/runs"), {"10.0.0.1"}, ["gpu_worker"])
    monkeypatch.setenv(SHARED_STORAGE_ENV, "1")
    _check(_sweep(str(tmp_path)), {"10.0.0.1", "10.0.0.2"}, [])


def test_a_local_data_dir_on_several_machines_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hamtune.sweep.cluster"):
        _check(_sweep("s3://bucket/runs", str(tmp_path)), {"10.0.0.1", "10.0.0.2"}, [])
        _check(_sweep("s3://bucket/runs", "s3://bucket/ham10000"), {"10.0.0.1", "10.0.0.2"}, [])
    (record,) = caplog.records
    assert record.getMessage().startswith(f"data.dir {tmp_path} is a local path on 2 machines")


@pytest.mark.parametrize("address", [None, "auto", "local", "10.0.0.1:6379", "head-node:6379", "ray://head:10001",
                                     "[::1]:6379"])
def test_addresses_ray_can_join_are_accepted(address: str | None) -> None:
    check_address(address)


@pytest.mark.parametrize("address", ["head", ":6379", "head:", "head:port", "head:0", "head:99999", "ray://head"])
def test_a_malformed_address_is_refused_naming_the_allowed_forms(address: str) -> None:
    # Ray itself would retry an impossible port for minutes before giving up.
    with pytest.raises(ConfigError, match=r"--address must be auto, local or HOST:PORT with a port in \[1, 65535\], "
                                          rf"got '{re.escape(address)}'"):
        check_address(address)
