"""Device set-up of a trial process with the real TensorFlow: quiet start-up, GPU checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hamtune.training.device import STARTUP_LINES, replay


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, so TensorFlow is imported for the first time (`env`: added variables)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **env})


def test_tensorflow_start_up_lines_are_captured_not_printed() -> None:
    # Which start-up lines TensorFlow prints depends on how it was built and on the machine (CPU
    # features, CUDA drivers), so none is expected: whatever it prints, none reaches stderr, and
    # stderr works as before once the import is done.
    result = run_python("import os, sys, warnings\n"
                        "from hamtune.training.device import STARTUP_LINES, import_tensorflow\n"
                        "tf, startup = import_tensorflow()\n"
                        "assert all(STARTUP_LINES.search(line) for line in startup.splitlines()), startup\n"
                        "warnings.warn('a warning the user must see')\n"
                        "os.write(2, b'an error written to file descriptor 2\\n')\n"
                        "print('to sys.stderr', file=sys.stderr)\n")
    assert result.returncode == 0, result.stderr
    assert not STARTUP_LINES.search(result.stderr), result.stderr
    for line in ("UserWarning: a warning the user must see", "an error written to file descriptor 2", "to sys.stderr"):
        assert line in result.stderr, result.stderr


def test_replay_keeps_everything_but_known_start_up_lines(capsys: pytest.CaptureFixture[str]) -> None:
    output = ("W0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
              "/x/module.py:3: UserWarning: something the user must see\n"
              "I0000 port.cc:153] oneDNN custom operations are on.\n")
    assert replay(output, imported=True) == [output.splitlines()[0], output.splitlines()[2]]
    assert capsys.readouterr().err == "/x/module.py:3: UserWarning: something the user must see\n"
    assert replay(output, imported=False) == []  # a failed import shows everything it printed
    assert capsys.readouterr().err == output


def test_logical_gpu_on_a_node_without_gpus_trains_on_the_cpu_with_a_warning(tmp_path: Path) -> None:
    # A node without NVIDIA devices (paths that do not exist) and no GPU for TensorFlow, on any machine.
    result = run_python("import logging, hamtune.training.device as d\n"
                        "logging.basicConfig(level=logging.WARNING)\n"
                        f"d.NVIDIA_DEVICES = (d.Path({str(tmp_path / 'nvidia0')!r}), d.Path({str(tmp_path / 'gpus')!r}))\n"
                        "print(d.configure_tensorflow(1, True, mixed_precision=True))\n", CUDA_VISIBLE_DEVICES="-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
    assert "no NVIDIA GPU" in result.stderr


def test_gpu_trial_on_a_gpu_node_whose_tensorflow_sees_none_fails_with_the_reason(tmp_path: Path) -> None:
    device = tmp_path / "nvidia0"  # what an NVIDIA driver creates on a GPU node
    device.touch()
    # On any machine: CUDA_VISIBLE_DEVICES=-1 hides every GPU from TensorFlow, and the CUDA start-up
    # line is given, since which one TensorFlow prints (if any) depends on its build and the driver.
    cuda_line = "I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."
    result = run_python("import hamtune.training.device as d\n"
                        f"d.NVIDIA_DEVICES = (d.Path({str(device)!r}), d.Path({str(tmp_path / 'none')!r}))\n"
                        "real_import = d.import_tensorflow\n"
                        f"d.import_tensorflow = lambda: (real_import()[0], {cuda_line!r})\n"
                        "from hamtune.errors import HamtuneError\n"
                        "try:\n    d.configure_tensorflow(1, True, True)\n"
                        "except HamtuneError as exc:\n    print(exc)\n", CUDA_VISIBLE_DEVICES="-1")
    assert result.returncode == 0, result.stderr
    assert "this trial was given a GPU, but TensorFlow" in result.stdout
    assert "finds none on this GPU node (Could not find cuda drivers on your machine" in result.stdout
    assert "pip install 'tensorflow[and-cuda]'" in result.stdout


def test_a_process_already_on_tensorflow_refuses_to_train_on_jax() -> None:
    import keras

    from hamtune.training.device import use_backend
    from hamtune.errors import HamtuneError

    use_backend("tensorflow")  # the backend this process already runs: nothing to do
    with pytest.raises(HamtuneError, match=r"already runs Keras on tensorflow, so it cannot train on jax.*KERAS_BACKEND=jax"):
        use_backend("jax")
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.parametrize(("use_gpu", "share", "expected"), [
    (None, 1.0, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.900"}),
    (True, 0.5, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.450"}),
    (False, 0.0, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "JAX_PLATFORMS": "cpu"}),
])
def test_a_jax_trial_takes_gpu_memory_on_demand_within_its_share(use_gpu: bool | None, share: float,
                                                                  expected: dict) -> None:
    """Before JAX starts: no preallocation, a memory cap of 0.9 x the trial's GPU share, GPUs hidden from a
    CPU trial. Run in a fresh process on a machine without GPUs: it trains on the CPU, in float32."""
    names = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "JAX_PLATFORMS")
    code = ("import json, os\nfrom hamtune.training.device import configure\n"
            f"on_gpu = configure('jax', 1, {use_gpu}, 'bfloat16', {share})\n"
            "import keras\n"
            f"print(json.dumps([on_gpu, keras.config.dtype_policy().name, {{k: os.environ.get(k) for k in {names}}}]))")
    env = {key: value for key, value in os.environ.items() if key not in names and key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    on_gpu, policy, settings = json.loads(result.stdout.splitlines()[-1])
    assert (on_gpu, policy) == (False, "float32")
    assert {key: value for key, value in settings.items() if value is not None} == expected
