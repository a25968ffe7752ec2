"""Faults injected into real sweeps, and what survives them (the checks read the result tables).

Each fault is injected through `HAMTUNE_FAULTS` (hamtune/faults.py) at a fixed point of the real
code: an out-of-memory at the start of an epoch, a full disk while a checkpoint or a result
table is written, a NaN loss from poisoned weights. Two sweeps run at once on one machine, one of
them the fault sweep, to show they do not interfere. The trial-process, driver and node kills
are in tests/sweep/test_resume.py and tests/sweep/test_multinode.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hamtune.faults import FAULTS_ENV, inject
from hamtune.store.tables import read_table, sort_records
from tests.support.sweeps import hamtune_env, tiny_sweep_yaml

OOM, NAN, HEALTHY, LATE_NAN = 0.1, 0.2, 0.3, 0.4  # each trial of the fault sweep is told apart by its dropout
TRIAL_FAULTS = [
    # OOM trial, first attempt: epoch 1 is checkpointed, then writing epoch 2's checkpoint
    # finds the disk full. Its retry resumes from epoch 1's checkpoint (start=1) and runs out
    # of memory before epoch 2: with max_retries 1 that is its last attempt.
    {"at": "checkpoint", "when": {"dropout": OOM, "epoch": 2}, "fault": "enospc"},
    {"at": "epoch", "when": {"dropout": OOM, "epoch": 2, "start": 1}, "fault": "oom"},
    {"at": "epoch", "when": {"dropout": NAN, "epoch": 1}, "fault": "nan"},
    {"at": "epoch", "when": {"dropout": LATE_NAN, "epoch": 2}, "fault": "nan"},  # after a scored epoch
]


def sweep_yaml(name: str, storage: Path, dropouts: tuple[float, ...], epochs: int, retries: int = 1) -> str:
    """A tiny sweep whose trials are exactly the given points (DenseNet121, 32 px, depth 0)."""
    points = [{"model": "densenet121", "learning_rate": 1.0e-3, "dropout": d, "class_weight_power": 0.5,
               "unfreeze_depth": 0} for d in dropouts]
    return tiny_sweep_yaml(name, storage, ("densenet121",), len(dropouts), epochs, points,
                           max_concurrent=len(dropouts), cpus=0.5, retries=retries)


def start_sweep(root: Path, name: str, yaml_text: str, cache: Path, faults: list | None = None) -> subprocess.Popen:
    """`hamtune sweep` in its own session (so its Ray processes can be found), output to a file."""
    (root / f"{name}.yaml").write_text(yaml_text)
    env = hamtune_env(cache)
    env.pop(FAULTS_ENV, None)
    if faults:
        env[FAULTS_ENV] = json.dumps(faults)
    return subprocess.Popen(
        [sys.executable, "-m", "hamtune", "sweep", str(root / f"{name}.yaml")], cwd=root, env=env,
        stdout=(root / f"{name}.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def run_sweep_cli(root: Path, name: str, yaml_text: str, cache: Path, faults: list) -> tuple[int, str]:
    process = start_sweep(root, name, yaml_text, cache, faults)
    try:
        code = process.wait(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    return code, (root / f"{name}.log").read_text()


def hamtune_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("hamtune: error:")]


# --- what listens: /proc, so no extra dependency -----------------------------------------------
def _processes_of(root_pid: int) -> set[int]:
    """`root_pid`, its descendants and its session (Ray's daemons)."""
    parents, sessions = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            parents[int(entry)], sessions[int(entry)] = int(fields[1]), int(fields[3])
    found = {pid for pid, sid in sessions.items() if sid == root_pid} | {root_pid}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _address(hex_address: str) -> ipaddress._BaseAddress:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp* print the address as host-order 32-bit words.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening(root_pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the processes of `root_pid` listen on."""
    inodes = _socket_inodes(_processes_of(root_pid))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host, port = local.split(":")
                found.add((str(_address(host)), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


# --- two sweeps at once, one of them full of faults ---------------------------------------------
@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The fault sweep (4 trials, 2 epochs) and a healthy neighbour (1 trial) started together,
    sharing one fresh cache; what their Ray processes listen on is sampled while they run."""
    root = tmp_path_factory.mktemp("two-sweeps")
    cache = root / "cache"
    storage = root / "runs"
    started = time.monotonic()
    faulty = start_sweep(root, "faults", sweep_yaml("faults", storage, (OOM, NAN, HEALTHY, LATE_NAN), epochs=2),
                         cache, TRIAL_FAULTS)
    neighbour = start_sweep(root, "neighbour", sweep_yaml("neighbour", storage, (HEALTHY,), epochs=1), cache)
    listeners: dict[str, set] = {"faults": set(), "neighbour": set()}
    cache_entries: dict[Path, tuple[int, int]] = {}
    try:
        deadline = time.monotonic() + 900
        while (faulty.poll() is None or neighbour.poll() is None) and time.monotonic() < deadline:
            for name, process in (("faults", faulty), ("neighbour", neighbour)):
                if process.poll() is None and list((storage / name).glob("trial_*/result.json")):
                    listeners[name] |= listening(process.pid)  # Ray and its trial workers are up
            for entry in cache.glob("images-*"):
                if (entry / "manifest.json").is_file() and entry not in cache_entries:
                    info = (entry / "manifest.json").stat()
                    cache_entries[entry] = (entry.stat().st_ino, info.st_mtime_ns)
            time.sleep(1)
    finally:
        for process in (faulty, neighbour):
            if process.poll() is None:
                os.killpg(process.pid, 9)
    return {
        "root": root, "cache": cache, "storage": storage, "seconds": time.monotonic() - started,
        "codes": {"faults": faulty.returncode, "neighbour": neighbour.returncode},
        "logs": {name: (root / f"{name}.log").read_text() for name in ("faults", "neighbour")},
        "listeners": listeners, "cache_entries": cache_entries,
    }


def trials_of(two_sweeps: dict, name: str) -> pd.DataFrame:
    return pd.read_parquet(two_sweeps["storage"] / name / "trials.parquet")


def trial_dir(two_sweeps: dict, dropout: float) -> Path:
    trials = trials_of(two_sweeps, "faults")
    trial_id = trials.loc[trials["dropout"] == dropout, "trial_id"].item()
    return two_sweeps["storage"] / "faults" / f"trial_{trial_id}"


def reports(directory: Path) -> list[dict]:
    path = directory / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.ray
def test_oom_trial_is_retried_from_its_checkpoint_then_recorded_as_error(
    two_sweeps: dict, record_property: pytest.RecordProperty,
) -> None:
    """Out of memory (TensorFlow's ResourceExhaustedError) in a trial, in every attempt.

    Checked: the trial is retried exactly `failures.max_retries` (1) times, the retry resumes from
    its last checkpoint (epoch 1 is never trained twice), and when retries run out the trial is in
    trials.parquet with status ERROR and the error message; the sweep goes on.
    """
    assert two_sweeps["codes"]["faults"] == 0, two_sweeps["logs"]["faults"][-5000:]
    trials = trials_of(two_sweeps, "faults")
    row = trials.set_index("dropout").loc[OOM]
    assert row["status"] == "ERROR"
    assert "ResourceExhaustedError" in row["error"] and "OOM when allocating" in row["error"]
    assert "start=1" in row["error"]  # the attempt that resumed from epoch 1's checkpoint
    assert row["epochs_completed"] == 1
    directory = trial_dir(two_sweeps, OOM)
    failures = (directory / "error.txt").read_text().split("Failure # ")[1:]
    assert len(failures) == 2, "one attempt plus max_retries=1 retry"
    assert "ResourceExhaustedError" in failures[1]
    assert [r["epoch"] for r in reports(directory)] == [1]  # the retry did not redo epoch 1
    epochs = pd.read_parquet(two_sweeps["storage"] / "faults" / "epochs.parquet")
    assert epochs.loc[epochs["dropout"] == OOM, "epoch"].tolist() == [1]
    record_property("observed", f"status ERROR after {len(failures)} attempts: {row['error']}")


@pytest.mark.slow
@pytest.mark.ray
def test_full_disk_while_checkpointing_fails_the_attempt_and_keeps_the_last_checkpoint(
    two_sweeps: dict, record_property: pytest.RecordProperty,
) -> None:
    """Disk full (ENOSPC) while a trial writes its epoch-2 checkpoint.

    Checked: the attempt fails with a clear "No space left on device" message, epoch 2 is never
    reported, the epoch-1 checkpoint stays intact and the retry resumes from it.
    """
    directory = trial_dir(two_sweeps, OOM)
    first_failure = (directory / "error.txt").read_text().split("Failure # ")[1]
    assert "No space left on device" in first_failure and "checkpoint" in first_failure
    row = trials_of(two_sweeps, "faults").set_index("dropout").loc[OOM]
    state = json.loads((Path(row["checkpoint"]) / "state.json").read_text())
    assert state["epoch"] == 1
    record_property("observed", "attempt failed with [Errno 28]; retry resumed at epoch 2 from the epoch-1 checkpoint")


@pytest.mark.slow
@pytest.mark.ray
def test_nan_loss_stops_the_trial_unscored_and_unretried(
    two_sweeps: dict, record_property: pytest.RecordProperty,
) -> None:
    """NaN loss: the trial's weights are set to NaN before epoch 1, so training yields a real NaN loss.

    Checked: the trial stops at once and is recorded as DIVERGED with the message, has no score
    in trials.parquet and no epoch row, is not retried and not left running.
    """
    trials = trials_of(two_sweeps, "faults")
    row = trials.set_index("dropout").loc[NAN]
    assert row["status"] == "DIVERGED"
    assert "training loss became nan at epoch 1" in row["error"]
    assert pd.isna(row["val_macro_f1"]) and pd.isna(row["best_epoch"])
    directory = trial_dir(two_sweeps, NAN)
    assert not (directory / "error.txt").exists(), "a diverged trial is not an error to retry"
    lines = reports(directory)
    assert len(lines) == 1 and lines[0]["diverged"] and "epoch" not in lines[0]
    epochs = pd.read_parquet(two_sweeps["storage"] / "faults" / "epochs.parquet")
    assert not (epochs["dropout"] == NAN).any()
    record_property("observed", f"status DIVERGED, no score, 1 attempt: {row['error']}")


@pytest.mark.slow
@pytest.mark.ray
def test_a_late_nan_loss_keeps_the_best_epoch_and_its_checkpoint(
    two_sweeps: dict, record_property: pytest.RecordProperty,
) -> None:
    """NaN loss after a scored epoch: the weights are set to NaN before epoch 2.

    Checked: the trial keeps its epoch-1 score and checkpoint, is ranked and marked diverged
    with the message, and is not retried.
    """
    trials = trials_of(two_sweeps, "faults")
    row = trials.set_index("dropout").loc[LATE_NAN]
    assert row["status"] == "TERMINATED" and row["diverged"]
    assert "training loss became nan at epoch 2" in row["error"]
    assert row["best_epoch"] == 1 and row["val_macro_f1"] >= 0
    assert json.loads((Path(row["checkpoint"]) / "state.json").read_text())["epoch"] == 1
    assert not (trial_dir(two_sweeps, LATE_NAN) / "error.txt").exists()
    record_property("observed", f"status {row['status']}, diverged, best epoch {row['best_epoch']} kept "
                                f"(val_macro_f1 {row['val_macro_f1']:.3f}): {row['error']}")


@pytest.mark.slow
@pytest.mark.ray
def test_the_sweep_goes_on_past_failed_trials(two_sweeps: dict, record_property: pytest.RecordProperty) -> None:
    """A sweep in which one trial errors and one diverges.

    Checked: the other trial trains to the end and is the scored, top row of trials.parquet; the
    sweep exits 0 with every trial recorded once.
    """
    assert two_sweeps["codes"]["faults"] == 0, two_sweeps["logs"]["faults"][-5000:]
    trials = trials_of(two_sweeps, "faults")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    healthy = trials.set_index("dropout").loc[HEALTHY]
    assert healthy["status"] == "TERMINATED" and not healthy["diverged"]
    assert healthy["epochs_completed"] == 2 and healthy["val_macro_f1"] >= 0
    assert trials.iloc[0]["dropout"] in (HEALTHY, LATE_NAN)  # the two ranked trials come first
    statuses = dict(zip(trials["dropout"], trials["status"]))
    record_property("observed", f"statuses {statuses}; exit 0")


@pytest.mark.slow
@pytest.mark.ray
def test_two_sweeps_at_once_do_not_interfere(two_sweeps: dict, record_property: pytest.RecordProperty) -> None:
    """Two sweeps with different names started at the same moment on one machine, one shared cache.

    Checked: each has its own experiment directory holding only its own trials, both finish, the
    synthetic data set and the image cache are built once (one build in the logs, one cache
    entry that is never rebuilt, no leftovers).
    """
    assert two_sweeps["codes"]["neighbour"] == 0, two_sweeps["logs"]["neighbour"][-5000:]
    faults, neighbour = trials_of(two_sweeps, "faults"), trials_of(two_sweeps, "neighbour")
    assert len(neighbour) == 1 and neighbour["status"].item() == "TERMINATED"
    assert not set(faults["trial_id"]) & set(neighbour["trial_id"])
    for name, table in (("faults", faults), ("neighbour", neighbour)):
        on_disk = {p.name.removeprefix("trial_") for p in (two_sweeps["storage"] / name).glob("trial_*")}
        assert on_disk == set(table["trial_id"]), name
    logs = two_sweeps["logs"]["faults"] + two_sweeps["logs"]["neighbour"]
    assert logs.count("generating synthetic dataset") == 1
    assert logs.count("building image cache") == 1 and "rebuilding" not in logs
    cache = two_sweeps["cache"]
    entries = [p for p in cache.glob("images-*") if p.is_dir()]
    assert len(entries) == 1 and not list(cache.glob(".*tmp*"))
    first_seen = two_sweeps["cache_entries"][entries[0]]
    assert (entries[0].stat().st_ino, (entries[0] / "manifest.json").stat().st_mtime_ns) == first_seen
    record_property("observed", f"2 experiment dirs, 1 image-cache build; both sweeps took {two_sweeps['seconds']:.0f} s")


@pytest.mark.slow
@pytest.mark.ray
def test_the_local_ray_instance_listens_on_loopback_only(
    two_sweeps: dict, record_property: pytest.RecordProperty,
) -> None:
    """What the private Ray instance of `hamtune sweep` listens on, sampled while trials ran.

    Checked: every listening TCP socket of the sweep's processes (GCS, raylet, workers,
    runtime-env agent) is bound to 127.0.0.1, and no dashboard is served (no port 8265).
    """
    for name, found in two_sweeps["listeners"].items():
        assert found, f"no listening socket of the {name} sweep was seen"
        exposed = sorted(item for item in found if not is_loopback(item[0]))
        assert not exposed, f"{name} listens beyond loopback: {exposed}"
        assert 8265 not in {port for _, port in found}
    count = sum(len(found) for found in two_sweeps["listeners"].values())
    record_property("observed", f"{count} listening sockets, all on 127.0.0.1; no dashboard")


# --- every trial failing; the tables' disk full ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.ray
def test_every_trial_failing_exits_nonzero_naming_the_first_error(
    tmp_path: Path, hamtune_cache: Path, record_property: pytest.RecordProperty,
) -> None:
    """Host out of memory (MemoryError) at the start of every trial, in every attempt.

    Checked: `hamtune sweep` exits non-zero with one line saying all trials failed and the
    first error; trials.parquet holds every trial as ERROR with its message.
    """
    faults = [{"at": "epoch", "when": {"epoch": 1}, "fault": "memory"}]
    code, log = run_sweep_cli(tmp_path, "allfail", sweep_yaml("allfail", tmp_path / "runs", (OOM, HEALTHY), 1),
                              hamtune_cache, faults)
    assert code == 2, log[-5000:]
    [line] = hamtune_errors(log)
    assert "all 2 trials failed" in line and "MemoryError: injected" in line and "trials.parquet" in line
    assert "Traceback" not in log.split("hamtune: error:")[1]
    trials = pd.read_parquet(tmp_path / "runs" / "allfail" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "ERROR").all()
    assert trials["error"].str.startswith("MemoryError: injected").all()
    record_property("observed", line.replace(str(tmp_path), "<tmp>"))


@pytest.mark.slow
@pytest.mark.ray
def test_full_disk_while_writing_the_tables_stops_the_sweep_and_keeps_the_last_table(
    tmp_path: Path, hamtune_cache: Path, record_property: pytest.RecordProperty,
) -> None:
    """Disk full (ENOSPC) when the driver rewrites trials.parquet for the second finished trial.

    Checked: the sweep stops with one line naming the file, the cause and `--resume`; the
    trials.parquet written before is intact and readable; no temporary file is left behind.
    """
    faults = [{"at": "epoch", "when": {"epoch": 1}, "fault": "memory"},
              {"at": "write_table", "when": {"file": "trials.parquet", "rows": 2}, "fault": "enospc"}]
    code, log = run_sweep_cli(tmp_path, "diskfull", sweep_yaml("diskfull", tmp_path / "runs", (OOM, HEALTHY), 1, 0),
                              hamtune_cache, faults)
    assert code == 2, log[-5000:]
    [line] = hamtune_errors(log)
    experiment = tmp_path / "runs" / "diskfull"
    assert f"could not write {experiment}/trials.parquet" in line and "No space left on device" in line
    assert "previous table is intact" in line and "--resume" in line
    trials, _ = read_table(str(experiment / "trials.parquet"))
    assert len(trials) == 1 and trials["status"].item() == "ERROR"
    assert not list(experiment.glob(".tmp-*"))
    record_property("observed", line.replace(str(tmp_path), "<tmp>"))


# --- the injection point itself -----------------------------------------------------------------
def test_failed_trials_never_rank_above_finished_ones() -> None:
    rows = [{"trial_id": "err", "status": "ERROR", "val_macro_f1": 0.9},  # a good epoch before its OOM
            {"trial_id": "ok", "status": "TERMINATED", "val_macro_f1": 0.2},
            {"trial_id": "nan", "status": "DIVERGED", "val_macro_f1": None}]
    assert [row["trial_id"] for row in sort_records(rows)] == ["ok", "err", "nan"]


def test_faults_are_inert_unless_configured_and_match_only_their_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    inject("epoch", None, epoch=1)
    monkeypatch.setenv(FAULTS_ENV, json.dumps([{"at": "epoch", "when": {"epoch": 2}, "fault": "memory"}]))
    inject("epoch", None, epoch=1)
    inject("checkpoint", None, epoch=2)
    with pytest.raises(MemoryError, match=r"injected by HAMTUNE_FAULTS at epoch \(epoch=2\)"):
        inject("epoch", None, epoch=2)
    monkeypatch.setenv(FAULTS_ENV, json.dumps([{"at": "epoch", "fault": "segfault"}]))
    with pytest.raises(ValueError, match="fault must be one of oom, memory, nan, enospc, got 'segfault'"):
        inject("epoch", None, epoch=1)
