"""A real two-node Ray cluster on one machine: a head (no GPU, runs the driver) and a GPU worker,
started as separate `ray start` processes, then `hamtune sweep --address` with one (logical)
GPU per trial. Every trial must run on the worker; when the worker is lost after the trials'
first checkpoints, a fresh worker takes over and each trial continues from its checkpoint.

The test owns every process it starts: each `ray start` runs in its own session, and cleanup
kills exactly the processes of those sessions (never a global `ray stop`, which would take
down other Ray instances on the machine). A private token authenticates all of them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.support.processes import alive_in_session, wait_until
from tests.support.sweeps import hamtune_env, tiny_sweep_yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = str(Path(sys.executable).with_name("ray"))
NAME = "multinode"


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class RayNode:
    """One `ray start` in a session of its own; `kill()` ends every process of that session."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log = name, log_dir / f"{name}.log"
        ports = dict(zip(
            ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port"],
            _free_ports(6),
        ))
        command = [RAY, "start", *args, "--disable-usage-stats", "--object-store-memory", "200000000",
                   *[f"--{key}={port}" for key, port in ports.items()]]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.sid = self.process.pid
        if self.process.wait(timeout=120) != 0:
            raise RuntimeError(f"`ray start` of the {name} failed:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        for _ in range(50):
            pids = alive_in_session(self.sid)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"processes of the {self.name} survived SIGKILL: {alive_in_session(self.sid)}")


class Cluster:
    """A head with no GPU and workers with two logical GPUs each, all on this machine."""

    def __init__(self, root: Path, temp_dir: Path, env: dict[str, str]) -> None:
        self.root, self.temp_dir, self.env = root, temp_dir, env
        self.nodes: list[RayNode] = []
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"

    def start_head(self) -> None:
        # Lost nodes are noticed within a few seconds instead of Ray's default ~30 s.
        env = {**self.env, "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        dashboard, client = _free_ports(2)
        self.nodes.append(RayNode("head", [
            "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
            "--include-dashboard=false", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
            f"--temp-dir={self.temp_dir / 'head'}",
        ], env, self.root))

    def start_worker(self, name: str) -> RayNode:
        """A worker with a node-local cache of its own, as on a separate machine."""
        env = {**self.env, "HAMTUNE_CACHE_DIR": str(self.root / f"{name}-cache")}
        node = RayNode(name, [
            f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=2",
            f"--temp-dir={self.temp_dir / name}",
        ], env, self.root)
        self.nodes.append(node)
        return node

    def nodes_info(self) -> list[dict]:
        """`ray.nodes()` from a short-lived driver (RAY_ADDRESS set for that subprocess only)."""
        script = ("import json, ray; ray.init(logging_level='ERROR'); "
                  "print(json.dumps([{k: n[k] for k in ('NodeID', 'Alive', 'Resources')} for n in ray.nodes()]))")
        result = subprocess.run([sys.executable, "-c", script], env={**self.env, "RAY_ADDRESS": self.address},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def alive_gpu_node_ids(self) -> set[str]:
        return {n["NodeID"] for n in self.nodes_info() if n["Alive"] and n["Resources"].get("GPU", 0) > 0}

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Ray's sockets live under --temp-dir and a Unix socket path may not exceed 107 bytes, which
    # pytest's tmp_path plus Ray's session directory names would; hence a short directory in /tmp.
    temp_dir = Path(tempfile.mkdtemp(prefix="hm", dir="/tmp"))
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cluster = Cluster(tmp_path, temp_dir, env)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _checkpoints(experiment: Path) -> dict[str, set[str]]:
    """Complete checkpoints per trial directory (a checkpoint's state file is written last)."""
    found: dict[str, set[str]] = {}
    for state in experiment.glob("trial_*/checkpoint_*/state.json"):
        found.setdefault(state.parent.parent.name, set()).add(state.parent.name)
    return found


def _reported(experiment: Path) -> dict[str, int]:
    """Epochs the driver has logged per trial directory (Tune's result.json, one line per report)."""
    found = {}
    for result in experiment.glob("trial_*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        if lines:
            found[result.parent.name] = len(lines)
    return found


#: Epochs per trial: the worker is lost after the first, and every trial still has some to train.
EPOCHS = 3


def test_trials_run_on_the_gpu_worker_and_survive_losing_it(
    cluster: Cluster, tmp_path: Path, hamtune_cache: Path
) -> None:
    cluster.start_head()
    first = cluster.start_worker("worker1")
    (first_id,) = cluster.alive_gpu_node_ids()
    head_ids = {n["NodeID"] for n in cluster.nodes_info()} - {first_id}

    storage = tmp_path / "runs"  # a local path: allowed because every node is on this one host
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(tiny_sweep_yaml(NAME, storage, ("densenet121",), trials=2, epochs=EPOCHS, points=[],
                                          images=140, depth=(1, 1), gpus=1, retries=2))
    experiment = storage / NAME
    log = tmp_path / "driver.log"
    driver_env = {**hamtune_env(hamtune_cache), **{k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}}
    driver_env.pop("RAY_ADDRESS", None)
    with log.open("w") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "hamtune", "sweep", str(sweep_file), "--address", cluster.address],
            cwd=tmp_path, env=driver_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        # Lose the worker once both trials have checkpointed their first epoch: with EPOCHS
        # epochs, each still has at least one to train (warm or not, an epoch here takes seconds).
        # The driver has registered a report (and its checkpoint) once Tune's logger wrote it to
        # the trial's result.json.
        wait_until(lambda: len(_reported(experiment)) == 2 or None, 330, "both trials' first reports", driver, log)
        at_kill = _checkpoints(experiment)
        first.kill()
        cluster.start_worker("worker2")
        assert driver.wait(timeout=420) == 0, log.read_text()[-5000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    (second_id,) = cluster.alive_gpu_node_ids()
    assert second_id != first_id

    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert len(trials) == 2
    assert (trials["status"] == "TERMINATED").all() and (trials["epochs_completed"] == EPOCHS).all()
    assert set(trials["node"]) <= {first_id, second_id} and not set(trials["node"]) & head_ids
    assert len(epochs) == 2 * EPOCHS and not set(epochs["node"]) & head_ids

    last = f"checkpoint_{EPOCHS - 1:06d}"
    interrupted = [d.removeprefix("trial_") for d, names in at_kill.items() if last not in names]
    assert interrupted, f"no trial was caught between its first and last checkpoint: {at_kill}"
    for trial_id, rows in epochs.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        assert rows["epoch"].tolist() == list(range(1, EPOCHS + 1)), trial_id
        if trial_id in interrupted:
            # The epochs checkpointed before the kill stay the lost worker's; the retry resumed
            # from the last of them on the new worker and trained the rest there.
            nodes = rows["node"].tolist()
            done = nodes.count(first_id)
            assert done >= len(at_kill[f"trial_{trial_id}"]) and nodes == [first_id] * done + [second_id] * (EPOCHS - done)
            assert 0 < done < EPOCHS, (trial_id, nodes)
        # Tune's own log of every report: no epoch was reported twice (no restart from scratch).
        reported = [json.loads(line)["epoch"] for line in
                    (experiment / f"trial_{trial_id}" / "result.json").read_text().splitlines()]
        assert reported == list(range(1, EPOCHS + 1)), (trial_id, reported)
