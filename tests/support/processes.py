"""Watching the processes a test starts: a sweep that must reach a state, the daemons it leaves."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import os


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
