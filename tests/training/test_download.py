"""ImageNet weights: one verified download per node, against a real HTTP server on 127.0.0.1.

The server serves a small weights file the test makes; a `Backbone` variant carries that file's
hash (the registry keeps Keras's). `KERAS_HOME` points the cache at a temporary directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hamtune.errors import ModelError
from hamtune.backbones import BACKBONES, Backbone
from hamtune.training.models import WEIGHTS_BASE_URL_ENV, download_imagenet
from tests.support.shared import REPO

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB
BACKBONE = BACKBONES["densenet121"]
FILE_NAME = BACKBONE.imagenet_url.rsplit("/", 1)[-1]


def for_test(backbone: Backbone, data: bytes = WEIGHTS) -> Backbone:
    """`backbone` expecting `data` as its ImageNet weights file."""
    return dataclasses.replace(backbone, imagenet_hash=f"sha256:{hashlib.sha256(data).hexdigest()}")


class WeightsServer:
    """Serves `body` for any path after `delay` seconds, counting the GET requests."""

    def __init__(self, body: bytes, delay: float = 0.0) -> None:
        self.body, self.delay, self.gets = body, delay, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.gets.append(self.path)
                time.sleep(server.delay)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own weights cache; requests to 127.0.0.1 bypass any proxy set for the machine."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path / "keras"


def serve(monkeypatch: pytest.MonkeyPatch, body: bytes, delay: float = 0.0) -> WeightsServer:
    server = WeightsServer(body, delay)
    monkeypatch.setenv(WEIGHTS_BASE_URL_ENV, server.url)
    return server


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    server = serve(monkeypatch, WEIGHTS)
    yield server
    server.close()


def test_registry_hashes_are_the_ones_keras_checks() -> None:
    """Each hash appears in its Keras application's source, with the algorithm its length implies."""
    applications = Path(importlib.util.find_spec("keras").origin).parent / "src" / "applications"
    for backbone in BACKBONES.values():
        algorithm, _, digest = backbone.imagenet_hash.partition(":")
        assert {32: "md5", 64: "sha256"}[len(digest)] == algorithm
        assert f'"{digest}"' in (applications / f"{backbone.preprocessing}.py").read_text()


def test_two_concurrent_trials_on_one_node_download_once(
    keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(monkeypatch, WEIGHTS, delay=1.5)
    script = (
        "import dataclasses, logging, sys\n"
        "from hamtune.backbones import BACKBONES\nfrom hamtune.training.models import download_imagenet\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        f"spec = dataclasses.replace(BACKBONES['densenet121'], imagenet_hash={for_test(BACKBONE).imagenet_hash!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(download_imagenet(spec), flush=True)\n"
    )
    trials = [
        subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(os.environ),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for trial in trials:  # both imported hamtune: release them together
            assert trial.stdout.readline() == "ready\n"
        for trial in trials:
            trial.stdin.write("\n")
            trial.stdin.flush()
        results = [trial.communicate(timeout=30) for trial in trials]
    finally:
        server.close()
        for trial in trials:
            trial.kill()
    assert [trial.returncode for trial in trials] == [0, 0], results
    target = keras_home / "models" / FILE_NAME
    assert [out.strip() for out, _ in results] == [str(target), str(target)]
    assert server.gets == [f"/weights/{FILE_NAME}"]
    waited = [err for _, err in results if "waiting for another process downloading" in err]
    assert len(waited) == 1 and "reusing" in waited[0], results
    assert target.read_bytes() == WEIGHTS
    assert sorted(p.name for p in target.parent.iterdir() if p.name.endswith(".part")) == []


def test_a_truncated_cached_file_is_fetched_again_with_one_warning(
    keras_home: Path, server: WeightsServer, caplog: pytest.LogCaptureFixture
) -> None:
    target = keras_home / "models" / FILE_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(WEIGHTS[:1000])
    spec = for_test(BACKBONE)

    with caplog.at_level(logging.INFO, logger="hamtune.training.download"):
        assert download_imagenet(spec) == target
    assert target.read_bytes() == WEIGHTS
    assert server.gets == [f"/weights/{FILE_NAME}"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"{target} does not have its known sha256 (truncated or corrupt?); downloading it again"
    ]

    caplog.clear()  # now verified: reused without a request or a warning
    assert download_imagenet(spec) == target
    assert server.gets == [f"/weights/{FILE_NAME}"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_unreachable_server_names_the_file_to_download_by_hand(
    keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mirror/{FILE_NAME}"
    monkeypatch.setenv(WEIGHTS_BASE_URL_ENV, f"http://127.0.0.1:{port}/mirror/")

    started = time.perf_counter()
    with pytest.raises(ModelError) as raised:
        download_imagenet(for_test(BACKBONE))
    message = str(raised.value)
    assert time.perf_counter() - started < 5
    assert "\n" not in message
    assert message == (
        f"could not download ImageNet weights for densenet121 into {keras_home / 'models'}: "
        f"cannot download {url}: [Errno 111] Connection refused; "
        f"download {url} elsewhere and set training.weights to its path"
    )
    assert not (keras_home / "models" / FILE_NAME).exists()


def test_wrong_bytes_are_refused_and_leave_no_file_under_the_final_name(
    keras_home: Path, server: WeightsServer
) -> None:
    spec = for_test(BACKBONE, b"the real weights")
    expected = hashlib.sha256(b"the real weights").hexdigest()
    url = f"{server.url}/{FILE_NAME}"

    with pytest.raises(ModelError) as raised:
        download_imagenet(spec)
    assert str(raised.value) == (
        f"could not download ImageNet weights for densenet121 into {keras_home / 'models'}: "
        f"{url} sent {len(WEIGHTS)} bytes whose sha256 is {hashlib.sha256(WEIGHTS).hexdigest()}, "
        f"not the expected {expected}; download {url} elsewhere and set training.weights to its path"
    )
    assert server.gets == [f"/weights/{FILE_NAME}"]
    assert sorted(p.name for p in (keras_home / "models").iterdir() if not p.name.endswith(".lock")) == []
