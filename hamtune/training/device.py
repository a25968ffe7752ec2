"""Where a trial computes: its Keras backend, its GPUs, thread pools, memory and precision.

Called once per trial process before Keras runs any op. Keras fixes its backend (TensorFlow or
JAX) at its first import, so `configure` sets it before that and refuses a process that already
runs the other one. Things a user would otherwise get wrong without noticing: TensorFlow's
start-up chatter in every trial's console output, a GPU trial that silently trains on the CPU
because the node's TensorFlow or JAX cannot use its GPUs, and a JAX trial that takes 75 % of
the card at start-up, so that trials sharing a GPU fail.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hamtune.config import PRECISION_POLICIES
from hamtune.errors import HamtuneError

logger = logging.getLogger(__name__)

#: Lines TensorFlow 2.21 prints on import through absl, before TF_CPP_MIN_LOG_LEVEL applies
#: (tensorflow/tensorflow#100442): informational on a working machine.
STARTUP_LINES = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|cpu_feature_guard|To enable the following instructions|"
    r"Unable to register cu\w+ factory|TF-TRT Warning"
)
BACKEND_ENV = "KERAS_BACKEND"
#: Share of a GPU's memory a JAX trial may take per GPU it was given: the rest is for the CUDA
#: contexts of the processes that share the card.
JAX_MEMORY_SHARE = 0.9
#: Device files of an NVIDIA driver: present on a GPU node, inside containers started with GPUs too.
NVIDIA_DEVICES = (Path("/dev/nvidia0"), Path("/proc/driver/nvidia/gpus"))


def import_tensorflow() -> tuple[Any, str]:
    """Import Keras and TensorFlow, capturing TensorFlow's known start-up lines.

    Returns the `tensorflow` module and the captured start-up lines (for a GPU error, and at
    debug level). Any other output of the import goes to stderr as usual, and all of it does
    when the import fails, so nothing that explains a failure is lost.
    """
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf, ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    imported = False
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401  Keras imports TensorFlow, its backend
            import tensorflow as tf

            imported = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            startup = replay(capture.read().decode(errors="replace"), imported)
    logger.debug("TensorFlow start-up: %s", " | ".join(startup))
    return tf, "\n".join(startup)


def replay(output: str, imported: bool) -> list[str]:
    """Write captured import output to stderr, except TensorFlow's start-up lines after a
    successful import; return those lines."""
    lines = output.splitlines()
    startup = [line for line in lines if imported and STARTUP_LINES.search(line)]
    other = [line for line in lines if line.strip() and line not in startup]
    if other:
        sys.stderr.write("\n".join(other) + "\n")
        sys.stderr.flush()
    return startup


def nvidia_devices_present() -> bool:
    """Whether this machine has NVIDIA GPUs at all, whatever TensorFlow makes of them."""
    return NVIDIA_DEVICES[0].exists() or any(NVIDIA_DEVICES[1].glob("*"))


def use_backend(backend: str) -> None:
    """Make this process's Keras run on `backend` ("tensorflow" or "jax").

    Before Keras's first import this sets KERAS_BACKEND (a Ray trial also inherits it from the
    sweep's runtime environment); afterwards the backend cannot change, so a mismatch is refused.
    """
    if "keras" not in sys.modules:
        os.environ[BACKEND_ENV] = backend
        return
    import keras

    if keras.backend.backend() != backend:
        raise HamtuneError(
            f"this process already runs Keras on {keras.backend.backend()}, so it cannot train on {backend}: "
            f"Keras fixes its backend at its first import; run it in a new process with {BACKEND_ENV}={backend}"
        )


def configure(backend: str, cpus: float, use_gpu: bool | None, mixed_precision: bool | str,
              gpu_share: float = 1.0) -> bool:
    """Select the Keras backend and set its devices, memory and precision; True when on a GPU.

    `use_gpu` as in `configure_tensorflow`; `gpu_share` is the GPU share Ray gave the trial
    (`resources.gpus_per_trial`), which bounds a JAX trial's device memory.
    """
    use_backend(backend)
    if backend == "jax":
        return configure_jax(use_gpu, mixed_precision, gpu_share)
    return configure_tensorflow(cpus, use_gpu, mixed_precision)


def configure_jax(use_gpu: bool | None, mixed_precision: bool | str, gpu_share: float = 1.0) -> bool:
    """JAX's counterpart of `configure_tensorflow`, before JAX initialises its devices.

    JAX takes 75 % of each GPU at start-up by default; here it allocates on demand, up to
    `JAX_MEMORY_SHARE` of the trial's GPU share (0.45 of the card at `gpus_per_trial: 0.5`), so
    trials sharing a card fit. `use_gpu=False` hides the GPUs. XLA sizes its CPU thread pool to
    the machine, not to the trial's CPU share.
    """
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if use_gpu is False:
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{JAX_MEMORY_SHARE * min(gpu_share, 1.0):.3f}"
    import jax
    import keras

    _keras_without_tensorflow()
    gpus = [device for device in jax.devices() if device.platform == "gpu"]
    if use_gpu and not gpus:
        if nvidia_devices_present():
            raise HamtuneError(
                f"this trial was given a GPU, but JAX {jax.__version__} finds none on this GPU node; install "
                "JAX with CUDA on every GPU node: pip install 'jax[cuda12]'"
            )
        logger.warning("this trial was given a GPU, but this node has no NVIDIA GPU (Ray's logical GPUs?): "
                       "training on the CPU")
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision] if gpus else "float32")
    return bool(gpus)


def _keras_without_tensorflow() -> None:
    """Make Keras count TensorFlow absent in a JAX process that has not imported it.

    Keras checks `tf.available` through a lazy module wherever TensorFlow is installed (when
    serialising a model, when seeding), and that check imports it: 6-12 s and its memory in a
    process that never uses it. With the import refused once, the lazy module keeps "absent".
    """
    if "tensorflow" in sys.modules:
        return
    from keras.src.utils.module_utils import tensorflow as lazy_tensorflow

    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` an ImportError
    try:
        lazy_tensorflow.available  # noqa: B018  caches the answer
    finally:
        del sys.modules["tensorflow"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Keras's own generator: what `keras.utils.set_random_seed` seeds,
    except TensorFlow's global seed.

    Keras draws initial weights, and every `keras.random` call without a seed, from its own
    generator; hamtune's other random ops take explicit seeds, and the batch order comes from
    NumPy (`hamtune.data.pipeline`), so TensorFlow's global seed decides nothing here. Setting it
    would cost a warm trial its head start: `tf.random.set_seed` clears TensorFlow's kernel
    caches, and the next `fit` of an already traced model instantiated its graph again (15 s
    against a 2 s epoch, measured at 32 px).
    """
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)  # recreated from the seed on first use
    random.seed(seed)
    np.random.seed(seed)


def configure_tensorflow(cpus: float, use_gpu: bool | None, mixed_precision: bool | str) -> bool:
    """Set devices, memory growth, thread pools and precision before TensorFlow runs any op.

    `use_gpu`: True when Ray gave this process a GPU, which TensorFlow must then use; False to
    hide the GPUs (a CPU trial on a GPU node, which Ray hands the node's CUDA_VISIBLE_DEVICES);
    None to use a GPU if TensorFlow finds one (`hamtune train`, an in-process refit). Returns
    whether the process computes on a GPU. GPU memory grows on demand so fractional GPUs can
    share a card; TF's pools follow the process's CPU share instead of the whole node's.
    `mixed_precision` is a `training.mixed_precision` value (true, false, float16, bfloat16).

    Raises HamtuneError when this process was given a GPU on a machine with NVIDIA GPUs but
    TensorFlow finds none (a CPU-only TensorFlow, or CUDA libraries that do not match the driver):
    such a trial would otherwise train on the CPU, tens of times slower, without a word.
    """
    tf, startup = import_tensorflow()
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    if use_gpu and not gpus:
        if nvidia_devices_present():
            reason = "; ".join(line.split("] ", 1)[-1] for line in startup.splitlines() if "cuda" in line.lower())
            raise HamtuneError(
                f"this trial was given a GPU, but TensorFlow {tf.__version__} finds none on this GPU node"
                f"{f' ({reason})' if reason else ''}; install TensorFlow with CUDA on every GPU node: "
                f"pip install 'tensorflow[and-cuda]' (hamtune's `gpu` extra)"
            )
        logger.warning("this trial was given a GPU, but this node has no NVIDIA GPU (Ray's logical GPUs?): "
                       "training on the CPU")
    try:
        if use_gpu is False and gpus:
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        threads = max(1, int(cpus))
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        logger.debug("TensorFlow was already initialised in this process; devices left as they are")
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision] if gpus else "float32")
    return bool(gpus)
