"""Open a local HTML file in real headless Chromium and record what the page did.

Chromium is driven through the DevTools protocol over `--remote-debugging-pipe` (JSON messages
separated by NUL bytes on file descriptors 3 and 4): no port, no extra package. The recording
holds every request the page made, its console errors and uncaught exceptions, and the result
of a JavaScript expression evaluated once the page has loaded.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.processes import alive_in_session

#: Running as root in a container needs --no-sandbox; the rest keeps Chromium itself off the network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--remote-debugging-pipe")


class PageRecord(NamedTuple):
    requests: list[str]  # every URL the page asked for, its own included
    errors: list[str]  # console errors, failed loads and uncaught exceptions
    value: Any  # what the expression evaluated to


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    """One DevTools connection: send commands, collect events, wait for replies."""

    def __init__(self, send_fd: int, receive_fd: int) -> None:
        self.send_fd, self.events = send_fd, queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, args=(receive_fd,), daemon=True).start()

    def _read(self, fd: int) -> None:
        buffer = b""
        while chunk := os.read(fd, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self.events.put(json.loads(message))

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             seen: list[dict] | None = None, timeout: float = 120.0) -> dict:
        """Send a command and wait for its reply; events meanwhile are appended to `seen`."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        return self.wait(lambda m: m.get("id") == self.next_id, seen, timeout)

    def wait(self, done: Any, seen: list[dict] | None, timeout: float) -> dict:  # noqa: ANN401 - a predicate
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(f"Chromium did not answer in {timeout} s") from None
            if done(message):
                if "error" in message:
                    raise RuntimeError(f"DevTools error: {message['error']}")
                return message
            if seen is not None and "method" in message:
                seen.append(message)


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")
    return errors


def _evaluate(pipe: _Pipe, session: str, expression: str, events: list[dict]) -> Any:  # noqa: ANN401 - JSON
    reply = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session,
                      seen=events)
    return reply["result"]["result"].get("value")


def _kill_session(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL every process of `process`'s session (Chromium and its helpers) and wait until none is left."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + timeout
    while alive_in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def open_page(path: Path, expression: str, ready: str = "true", settle: float = 1.0,
              timeout: float = 120.0) -> PageRecord:
    """Load `path` in headless Chromium, wait for its load event and then until the JavaScript `ready`
    is true (a loaded machine draws late), `settle` seconds more, and evaluate `expression`."""
    executable = chromium()
    if executable is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def onto_3_and_4() -> None:  # in the child: Chromium reads fd 3 and writes fd 4
        os.dup2(commands_read, 3)
        os.dup2(replies_write, 4)

    with tempfile.TemporaryDirectory(prefix="hamtune-chromium-") as profile:
        # Its own session, so that killing it takes its helper processes too: a helper left alive
        # went on writing into the profile while it was being removed ("Directory not empty").
        process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=onto_3_and_4, pass_fds=(3, 4), start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        try:
            pipe, events = _Pipe(commands_write, replies_read), []
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["result"]["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["result"]["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session, seen=events)
            pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session, seen=events)
            pipe.wait(lambda m: m.get("method") == "Page.loadEventFired", events, timeout)
            deadline = time.monotonic() + timeout
            while not _evaluate(pipe, session, ready, events) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(settle)
            value = _evaluate(pipe, session, expression, events)
            _evaluate(pipe, session, "0", events)  # a round trip, so every earlier event has arrived
        finally:
            _kill_session(process)
            os.close(commands_write)
            os.close(replies_read)
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    return PageRecord(requests, _errors(events), value)
