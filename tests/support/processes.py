"""Watching the processes a test starts: a sweep that must reach a state, the daemons it leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def own_session(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`command` started in a session of its own, its output into `log` (a file: a pipe nobody
    reads while it runs would fill up); killed with its process group on the way out if it is
    still running then, so a failed check leaves no driver or Ray behind."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL `process` and its process group (a driver and the local Ray it started), as a lost
    SSH session or an OOM kill would end them, and reap it."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen,
               log: Path) -> Any:
    """Poll `condition` until it returns something truthy; fail with the log if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the sweep exited ({process.returncode}) before {what}:\n{log.read_text()[-5000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-5000:]}")


def alive_in_session(sid: int) -> list[int]:
    """Processes (not zombies) of session `sid`, from /proc: Ray's daemons keep the session of `ray start`,
    Chromium's helpers the session of Chromium."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids
