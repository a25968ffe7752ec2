"""The Ray cluster a sweep runs on: joining it or starting a private one, what it can hold,
and whether a sweep's storage reaches every node.

Checked in the driver before any trial, so a sweep that cannot run on this cluster is refused
with the reason instead of failing mid-sweep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from hamtune.config import SweepConfig
from hamtune.data.remote import is_uri
from hamtune.errors import ConfigError, ExperimentError
from hamtune.store.experiment import ExperimentDir
from hamtune.faults import FAULTS_ENV
from hamtune.training.models import WEIGHTS_BASE_URL_ENV

logger = logging.getLogger(__name__)

WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
# Tune warns whenever checkpoints force experiment snapshots; hamtune wants exactly that (resume
# must see every checkpoint), so the warning is noise.
DRIVER_ENV = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0", "RAY_AIR_NEW_OUTPUT": "1"}
# A private local instance serves this sweep alone: Ray's single-machine mode (its default on
# macOS and Windows) binds every server it starts (GCS, raylet, workers, runtime-env agent) to
# 127.0.0.1 instead of all interfaces. Ray reads it once, when it is first imported.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: Settings of the driver's environment that every trial, on every node, must see too.
FORWARDED_ENV = (FAULTS_ENV, WEIGHTS_BASE_URL_ENV)


def check_address(address: str | None) -> None:
    """Refuse a malformed `--address` before anything starts: Ray retries an impossible port for minutes.

    Allowed: auto, local (a private instance), or [ray://]HOST:PORT with a TCP port.
    """
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--address must be auto, local or HOST:PORT with a port in [1, 65535], got {address!r}")


def init_ray(address: str | None, worker_env: dict[str, str] | None = None) -> None:
    """Join `address` (auto, host:port) or start a private local Ray instance on loopback only.

    The private instance has no dashboard and listens on 127.0.0.1 alone (call this before
    anything imports Ray). `FORWARDED_ENV` settings (fault tests, a weights mirror) and
    `worker_env` (the trials' Keras backend) travel to the workers, not to this process.
    """
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    with _environ({} if address else LOOPBACK_ENV):
        _init(address, worker_env)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """`values` set in this process's environment (where not set already) inside the block only.

    Ray and the servers `ray.init` starts read LOOPBACK_ENV when they start; left set, it would
    also reach every later child of this process, e.g. a `ray start` joining a real cluster from
    the same notebook, which Ray would then refuse ("Multi-node Ray clusters are not supported").
    """
    added = [key for key in values if key not in os.environ]
    os.environ.update({key: values[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _init(address: str | None, worker_env: dict[str, str] | None) -> None:
    import ray

    env_vars = {**WORKER_ENV, **{key: os.environ[key] for key in FORWARDED_ENV if key in os.environ},
                **(worker_env or {})}
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": env_vars}, "logging_level": logging.WARNING,
        "log_to_driver": True,
    }
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExperimentError(f"cannot join the Ray cluster at {address!r}: {error}") from error
    else:
        # "local": a new private instance even when `ray start` left a cluster on this machine
        # (address=None would silently join it) or RAY_ADDRESS is set; joining takes --address.
        ray.init(address="local", dashboard_host="127.0.0.1", include_dashboard=False, **kwargs)


@dataclass(frozen=True)
class Capacity:
    """How many trials of each model fit on the cluster at once, node by node."""

    per_model: dict[str, int]
    nodes: list[dict[str, float]]


def capacity(sweep: SweepConfig) -> Capacity:
    """Trials that fit at once per model; a model that fits on no node is a ConfigError."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    fits: dict[str, int] = {}
    for name in sweep.space.models:
        need = sweep.resources.for_model(name)
        total = 0
        for node in nodes:
            by_cpu = math.floor(node.get("CPU", 0) / need.cpus + 1e-9) if need.cpus else math.inf
            by_gpu = math.floor(node.get("GPU", 0) / need.gpus + 1e-9) if need.gpus else math.inf
            total += int(min(by_cpu, by_gpu)) if min(by_cpu, by_gpu) != math.inf else 0
        fits[name] = total
    return Capacity(per_model=fits, nodes=[{"CPU": n.get("CPU", 0), "GPU": n.get("GPU", 0)} for n in nodes])


#: Set to 1 when a local `storage` path is on a filesystem every node mounts (NFS and the like).
SHARED_STORAGE_ENV = "HAMTUNE_SHARED_STORAGE"
#: Where the cluster launcher (`ray up`) leaves the cluster's config on the head node.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def cluster_hosts(address: str | None) -> tuple[set[str], list[str]]:
    """The machines of the Ray cluster now, and the worker node types it may still add.

    An autoscaling cluster may have no worker yet when the sweep starts, so the launcher's
    config on the head is read too (only when joining a cluster: a private instance never grows).
    """
    import ray

    hosts = {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
    return hosts, launcher_worker_types(Path(BOOTSTRAP_CONFIG).expanduser()) if address else []


def launcher_worker_types(path: Path) -> list[str]:
    """Node types other than the head's that a cluster launcher config may start (none if absent)."""
    import yaml

    if not path.is_file():
        return []
    launcher = yaml.safe_load(path.read_text()) or {}
    return sorted(
        name for name, spec in launcher.get("available_node_types", {}).items()
        if name != launcher.get("head_node_type") and spec.get("max_workers", 0) > 0
    )


def check_cluster_paths(sweep: SweepConfig, experiment: ExperimentDir, hosts: set[str], worker_types: list[str]) -> None:
    """Refuse a head-local storage path when trials may run on other machines, before any trial.

    Trials write checkpoints and results to `storage` from the node they run on; Ray would only
    notice a path that exists on the head alone once a worker's trial first reports, mid-sweep.
    Nodes that all share one host (a test cluster on one machine) see the same paths.
    """
    if len(hosts) <= 1 and not worker_types:
        return
    where = (f"{len(hosts)} machines ({', '.join(sorted(hosts))})" if len(hosts) > 1
             else f"a cluster that may add {', '.join(worker_types)} nodes")
    if not experiment.is_remote and os.environ.get(SHARED_STORAGE_ENV) != "1":
        raise ExperimentError(
            f"storage {experiment.storage!r} is a local path, but this sweep runs on {where}: a "
            "worker's checkpoints and results would not reach it. Use an s3:// or gs:// URI "
            f"(--storage), or a path every node mounts (NFS) and set {SHARED_STORAGE_ENV}=1"
        )
    if sweep.data.dir is not None and not is_uri(sweep.data.dir):
        logger.warning(
            "data.dir %s is a local path on %s: every node must hold the same files there "
            "(an s3://, gs:// or file:// URI is fetched onto each node instead)", sweep.data.dir, where,
        )


def check_fits(sweep: SweepConfig, cap: Capacity, autoscaling: bool) -> None:
    unfit = [name for name, count in cap.per_model.items() if count == 0]
    if unfit and not autoscaling:
        needs = ", ".join(
            f"{name} needs {sweep.resources.for_model(name).cpus:g} CPU + "
            f"{sweep.resources.for_model(name).gpus:g} GPU" for name in unfit
        )
        largest = max(cap.nodes, key=lambda n: (n["GPU"], n["CPU"]), default={"CPU": 0, "GPU": 0})
        raise ConfigError(
            f"resources: no node can run a trial ({needs}); the largest node has "
            f"{largest['CPU']:g} CPU and {largest['GPU']:g} GPU. Lower resources.cpus_per_trial / "
            "gpus_per_trial or add nodes."
        )
