"""Faults injected into a real sweep: a trial process killed after its first checkpoint is retried
from that checkpoint (it continues at epoch 2), then the driver is killed with SIGKILL and
`hamtune sweep --resume` finishes the sweep with every trial exactly once and none re-run, in
the same Optuna study (no trial duplicated there either)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.support.processes import kill_group, own_session, wait_until
from tests.support.studies import assert_study_agrees_with_tables
from tests.support.sweeps import hamtune_env, tiny_sweep_yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TRIALS, EPOCHS = 3, 3


def reports(experiment: Path) -> dict[str, list[dict]]:
    """Every report Tune logged per trial directory (result.json lines), in order."""
    found = {}
    for path in experiment.glob("trial_*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found[path.parent.name] = lines
    return found


def test_trial_and_driver_kills_lose_nothing(tmp_path: Path, hamtune_cache: Path) -> None:
    sweep_file = tmp_path / "resume.yaml"
    sweep_file.write_text(tiny_sweep_yaml(
        "resume", tmp_path / "runs", models=("densenet121",), trials=TRIALS, epochs=EPOCHS,
    ))
    experiment = tmp_path / "runs" / "resume"
    command = [sys.executable, "-m", "hamtune", "sweep", str(sweep_file)]
    log = tmp_path / "driver.log"  # a file, not a pipe nobody reads while the sweep runs
    with own_session(command, log, tmp_path, hamtune_env(hamtune_cache)) as driver:
        # 1. A trial reported epoch 1 (with its checkpoint): kill that trial's process.
        first = wait_until(lambda: next(((name, r[0]) for name, r in reports(experiment).items() if r), None),
                           600, "a first checkpoint", driver, log)
        victim, report = first
        os.kill(report["pid"], signal.SIGKILL)

        # 2. Ray retries it from the checkpoint, in a new process, at epoch 2.
        def retried():
            lines = reports(experiment).get(victim, [])
            return [r for r in lines if r["pid"] != report["pid"]]
        after = wait_until(retried, 600, "the killed trial's retry to report", driver, log)
        assert after[0]["epoch"] == 2, f"retried trial restarted at epoch {after[0]['epoch']}, not 2"

        # 3. Kill the driver (and the local Ray instance it started) mid-sweep, once Tune has
        #    had a moment to snapshot the experiment after that checkpoint.
        time.sleep(3)
        kill_group(driver)
    if (experiment / "trials.parquet").exists():  # whatever was written before the kill is readable
        pd.read_parquet(experiment / "trials.parquet")
    before = {name: len(lines) for name, lines in reports(experiment).items()
              if len(lines) == EPOCHS}

    resumed = subprocess.run(command + ["--resume"], cwd=tmp_path, env=hamtune_env(hamtune_cache),
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]

    trials = pd.read_parquet(experiment / "trials.parquet")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique
    assert (trials["status"] == "TERMINATED").all()
    assert (trials["epochs_completed"] == EPOCHS).all()
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert len(epochs) == TRIALS * EPOCHS
    per_trial = epochs.groupby("trial_id")["epoch"].apply(sorted)
    assert all(seen == list(range(1, EPOCHS + 1)) for seen in per_trial), per_trial

    logged = reports(experiment)
    for name, count in before.items():  # finished before the kill: never re-run
        assert len(logged[name]) == count, f"{name} was re-run after resume"
    epochs_of_victim = [r["epoch"] for r in logged[victim]]
    assert epochs_of_victim.count(1) == 1, f"{victim} restarted from scratch: {epochs_of_victim}"
    assert set(epochs_of_victim) == set(range(1, EPOCHS + 1))
    assert_study_agrees_with_tables(experiment)


def test_on_a_terminal_a_sweep_shows_one_progress_bar_and_the_first_ctrl_c_ends_it_cleanly(
        tmp_path: Path, hamtune_cache: Path) -> None:
    """The real `hamtune sweep` on a pseudo-terminal; Ctrl-C typed once a trial has reported an epoch.

    Checked: the progress is one bar redrawn in place (no plain progress lines); after Ctrl-C the
    command exits with 130, its last line names `hamtune sweep FILE --resume` (never Ray's
    `Tuner.restore(...)`), the tables written so far are readable, the trials cut short are
    INTERRUPTED (not ERROR) and Ray Tune's state can be restored. Then `--resume`, killed
    mid-way, and `--resume` again: every trial ends once, the cut ones from their checkpoints.
    """
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios

    from ray import tune

    sweep_file = tmp_path / "stop.yaml"
    sweep_file.write_text(tiny_sweep_yaml("stop", tmp_path / "runs", models=("densenet121",), trials=TRIALS,
                                          epochs=EPOCHS))
    experiment = tmp_path / "runs" / "stop"
    env = hamtune_env(hamtune_cache)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the command, with the pseudo-terminal as its controlling terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "hamtune", "sweep", str(sweep_file)], env)
    # A new pseudo-terminal is 0 columns wide; a real one, and this one, has a size.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    shown = bytearray()

    def read_for(seconds: float) -> None:
        ready, _, _ = select.select([terminal], [], [], seconds)
        if ready:
            try:
                shown.extend(os.read(terminal, 65536))
            except OSError:  # EIO: the command exited and closed the terminal
                time.sleep(seconds)

    def ended() -> int | None:
        done, status = os.waitpid(pid, os.WNOHANG)
        return os.waitstatus_to_exitcode(status) if done else None

    code = None
    try:
        deadline = time.monotonic() + 600
        while not any(reports(experiment).values()):
            assert time.monotonic() < deadline and ended() is None, shown.decode(errors="replace")[-3000:]
            read_for(0.5)
        read_for(2)
        # The terminal signals its foreground process group: the driver's. Ray starts the trial
        # processes in a group of their own, with SIGINT blocked, so Ctrl-C never reaches them.
        trial_pid = next(r[0]["pid"] for r in reports(experiment).values() if r)
        blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", Path(f"/proc/{trial_pid}/status").read_text())[1], 16)
        assert os.getpgid(trial_pid) != os.getpgid(pid) or blocked & (1 << (signal.SIGINT - 1)), trial_pid
        os.write(terminal, b"\x03")  # Ctrl-C, as typed
        deadline = time.monotonic() + 180
        while (code := ended()) is None:
            assert time.monotonic() < deadline, shown.decode(errors="replace")[-3000:]
            read_for(0.5)
        read_for(0.5)
    finally:
        if code is None:  # not reaped: still running, or a check above failed first
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = shown.decode(errors="replace")
    assert code == 130, text[-3000:]
    assert re.search(rf"sweep: +\d+%\|[^\n]*\| [0-{TRIALS}]/{TRIALS} \[", text), text[-3000:]
    assert "\r" in text and not re.search(r"[\r\n]sweep: \d+/\d+ trials ended", text)  # in place, no plain lines
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # colour codes (Ray resets the colour at exit)
    last = plain.replace("\r", "\n").strip().splitlines()[-1]
    assert last.endswith(f"holds the state of the others and the tables so far; continue it with: "
                         f"hamtune sweep {sweep_file} --resume"), last
    assert "Tuner.restore" not in text
    assert tune.Tuner.can_restore(str(experiment))
    pd.read_parquet(experiment / "epochs.parquet")

    # The trials running at Ctrl-C never saw it: the driver stopped them, and the tables record
    # them as interrupted, not as errors.
    trials = pd.read_parquet(experiment / "trials.parquet")
    assert "ERROR" not in set(trials["status"]), trials[["trial_id", "status", "error"]]
    cut = trials[trials["epochs_completed"] < EPOCHS]
    assert len(cut) and (cut["status"] == "INTERRUPTED").all(), trials[["trial_id", "status", "epochs_completed"]]
    assert not any("KeyboardInterrupt" in line for lines in reports(experiment).values() for line in map(str, lines))

    # `--resume` continues them from their checkpoints. Killed itself (SIGKILL, as a lost SSH
    # session or an OOM kill would) once it has reported a new epoch, it resumes again.
    command = [sys.executable, "-m", "hamtune", "sweep", str(sweep_file), "--resume"]
    seen = {name: len(lines) for name, lines in reports(experiment).items()}
    log = tmp_path / "resume.log"
    with own_session(command, log, tmp_path, env) as driver:
        wait_until(lambda: any(len(lines) > seen.get(name, 0) for name, lines in reports(experiment).items()),
                   600, "the resumed sweep's first new epoch", driver, log)
        time.sleep(3)
        kill_group(driver)
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    trials = pd.read_parquet(experiment / "trials.parquet")
    assert len(trials) == TRIALS and (trials["status"] == "TERMINATED").all(), trials
    assert (trials["epochs_completed"] == EPOCHS).all()
    for name in (f"trial_{trial_id}" for trial_id in cut["trial_id"]):
        epochs = [line["epoch"] for line in reports(experiment)[name]]
        assert epochs.count(1) == 1 and set(epochs) == set(range(1, EPOCHS + 1)), (name, epochs)
