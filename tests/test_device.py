"""Device set-up of a trial process with the real TensorFlow: quiet start-up, GPU checks."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hamtune.device import STARTUP_LINES, configure_tensorflow, replay


def run_python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, so TensorFlow is imported for the first time."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)


def test_tensorflow_start_up_lines_are_captured_not_printed() -> None:
    result = run_python("from hamtune.device import import_tensorflow\n"
                        "tf, startup = import_tensorflow()\n"
                        "print(tf.__version__); print(startup)")
    assert result.returncode == 0, result.stderr
    assert not STARTUP_LINES.search(result.stderr), result.stderr
    # TensorFlow prints some of these on every machine (which ones depends on the CPU: oneDNN's
    # line only where oneDNN is on by default), and they were captured, not printed.
    assert STARTUP_LINES.search(result.stdout), result.stdout


def test_replay_keeps_everything_but_known_start_up_lines(capsys: pytest.CaptureFixture[str]) -> None:
    output = ("W0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
              "/x/module.py:3: UserWarning: something the user must see\n"
              "I0000 port.cc:153] oneDNN custom operations are on.\n")
    assert replay(output, imported=True) == [output.splitlines()[0], output.splitlines()[2]]
    assert capsys.readouterr().err == "/x/module.py:3: UserWarning: something the user must see\n"
    assert replay(output, imported=False) == []  # a failed import shows everything it printed
    assert capsys.readouterr().err == output


def test_logical_gpu_on_a_node_without_gpus_trains_on_the_cpu_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hamtune.device"):
        assert configure_tensorflow(1, True, mixed_precision=True) is False
    assert "no NVIDIA GPU" in caplog.text


def test_gpu_trial_on_a_gpu_node_whose_tensorflow_sees_none_fails_with_the_reason(tmp_path: Path) -> None:
    device = tmp_path / "nvidia0"  # what an NVIDIA driver creates on a GPU node
    device.touch()
    result = run_python("import hamtune.device as d\n"
                        f"d.NVIDIA_DEVICES = (d.Path({str(device)!r}), d.Path({str(tmp_path / 'none')!r}))\n"
                        "from hamtune.errors import HamtuneError\n"
                        "try:\n    d.configure_tensorflow(1, True, True)\n"
                        "except HamtuneError as exc:\n    print(exc)\n")
    assert result.returncode == 0, result.stderr
    assert "this trial was given a GPU, but TensorFlow" in result.stdout
    assert "finds none on this GPU node (Could not find cuda drivers" in result.stdout
    assert "pip install 'tensorflow[and-cuda]'" in result.stdout
