"""Accelerator seconds per epoch and per trial for each backbone, on hamtune's own model.

    KERAS_BACKEND=jax python benchmarks/gpu_epoch.py [--sweep sweeps/ham10000-workstation.yaml]
        [--models convnext_small densenet121] [--steps 30] [--repeats 3] [--processes 1 2 4]
        [--out results.json]

Why: a cluster user sizes `max_workers` and a budget from the GPU-hours of a trial. This builds
the model a trial trains (`hamtune.training.models.build_model`: in-graph augmentation, the application's
preprocessing, the backbone, the head) at the sweep file's image size, batch size and precision,
trains it as `hamtune.training.trial.train_epochs` does (the head-only phase, then `unfreeze` at the
top of the sweep's depth range, each phase compiled by `compile_model`), scores it with
`predict`, and times steady epochs of `--steps` batches after each compile. From those it
projects the accelerator time of one epoch and of one trial on HAM10000 (10,015 images split by
the sweep file's fractions). Inputs are random uint8 images: a step's arithmetic does not
depend on the pixels.

Baselines in the same run: the augmentation block is timed in a two-layer model against the same
model without it, so its cost per training step is a difference, not a guess; and with
`--processes 1 2 4` each backbone is measured by 1, 2 and 4 processes sharing the device, which
wait for each other (a barrier) before every timed part, so their steady steps overlap: the
aggregate images/s against one process's says whether trials should share a GPU
(`gpus_per_trial: 0.5` or `0.25`). Device memory is taken on demand (JAX's preallocation is
turned off, as TensorFlow's memory growth is in hamtune's trials), so the processes fit together.

Pure Keras, so it runs on any Keras backend. hamtune's trials run Keras on TensorFlow, whose
graph mode does not use XLA for this model (Keras marks `RandomRotation`/`RandomZoom` as not
jit-safe); with `KERAS_BACKEND=jax` (a GPU machine without TensorFlow) the script marks them
jit-safe, which they are under JAX, so each step is one XLA program. The numbers are therefore
the model's arithmetic on that device and backend, not a TensorFlow trial's wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before JAX starts: see the docstring
import keras  # noqa: E402
import numpy as np
import pandas as pd

from hamtune.config import load_sweep
from hamtune.labels import NUM_CLASSES
from hamtune.training.models import build_model, freeze_backbone, unfreeze
from hamtune.training.warm import compile_model
from machine import machine  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
HAM10000_IMAGES = 10_015


def accelerator() -> str:
    """The device Keras computes on, in words ("cpu" when there is none)."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {tf.config.experimental.get_device_details(gpus[0]).get('device_name')}" if gpus else "cpu"
    return keras.backend.backend()


def allow_jit(model: keras.Model) -> None:
    """Under JAX, let Keras compile the whole step with XLA (see the module docstring)."""
    if keras.backend.backend() == "jax":
        for layer in model._flatten_layers():
            layer.supports_jit = True


def timed(call: Any, repeats: int) -> float:
    """The fastest of `repeats` runs of `call()` in seconds (each run ends with results on the host)."""
    best = math.inf
    for _ in range(repeats):
        tick = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tick)
    return best


def no_peers() -> None:
    """The barrier of a measurement that runs alone."""


def fit_seconds(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch: int, repeats: int,
                sync: Callable[[], None] = no_peers) -> tuple[float, float]:
    """(first `fit` of two batches: tracing and compiling, steady seconds per batch after `sync()`)."""
    weights = np.ones(len(labels), dtype="float32")

    def fit(count: int) -> None:
        model.fit(images[:count], labels[:count], sample_weight=weights[:count], batch_size=batch,
                  epochs=1, verbose=0, shuffle=False)

    tick = time.perf_counter()
    fit(2 * batch)
    first = time.perf_counter() - tick
    sync()
    return first, timed(lambda: fit(len(labels)), repeats) / (len(labels) // batch)


def predict_seconds(model: keras.Model, images: np.ndarray, batch: int, repeats: int,
                    sync: Callable[[], None] = no_peers) -> tuple[float, float]:
    """(first `predict` of two batches, steady seconds per image after `sync()`)."""
    tick = time.perf_counter()
    model.predict(images[: 2 * batch], batch_size=batch, verbose=0)
    first = time.perf_counter() - tick
    sync()
    return first, timed(lambda: model.predict(images, batch_size=batch, verbose=0), repeats) / len(images)


def augmentation_seconds(size: int, images: np.ndarray, labels: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per training step of a pooled linear model with and without the augmentation block."""
    from hamtune.training.augment import build_augmentation

    def tiny(augment: bool) -> keras.Model:
        inputs = keras.Input((size, size, 3), dtype="uint8")
        x = keras.ops.cast(inputs, "float32")
        x = build_augmentation(seed=0)(x) if augment else x
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x))
        allow_jit(model)
        compile_model(model, 1e-3)
        return model

    with_block = fit_seconds(tiny(True), images, labels, batch, repeats)[1]
    without = fit_seconds(tiny(False), images, labels, batch, repeats)[1]
    return {"augmentation_step_s": with_block - without, "augmentation_with_s": with_block, "augmentation_without_s": without}


def measure(model_name: str, depth: int, size: int, batch: int, steps: int, repeats: int, seed: int,
            sync: Callable[[], None] = no_peers) -> dict[str, Any]:
    """Compile and steady-step times of both training phases and of inference, for one backbone.

    `sync` is called before each timed part (a barrier when several processes share the device).
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (steps * batch, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, steps * batch).astype("int32")
    keras.utils.set_random_seed(seed)
    tick = time.perf_counter()
    model = build_model(model_name, size, 0.2, weights="none", seed=seed)
    allow_jit(model)
    row: dict[str, Any] = {"model": model_name, "depth": depth, "build_s": time.perf_counter() - tick}
    freeze_backbone(model)
    compile_model(model, 1e-4)
    row["phase1_first_s"], row["phase1_step_s"] = fit_seconds(model, images, labels, batch, repeats, sync)
    row["predict_first_s"], row["predict_image_s"] = predict_seconds(model, images, batch, repeats, sync)
    unfreeze(model, model_name, depth)
    compile_model(model, 1e-5)
    row["phase2_first_s"], row["phase2_step_s"] = fit_seconds(model, images, labels, batch, repeats, sync)
    losses = model.evaluate(images[:batch], labels[:batch], batch_size=batch, verbose=0)
    row["finite_loss"] = bool(np.isfinite(losses if np.isscalar(losses) else losses[0]))
    return row


def _measure_in_child(policy: str, args: tuple, barrier: Any, results: Any) -> None:
    keras.mixed_precision.set_global_policy(policy)
    results.put(measure(*args, sync=lambda: barrier.wait(timeout=1800)))


def measure_together(processes: int, policy: str, *args: Any) -> list[dict[str, Any]]:
    """`measure(*args)` in `processes` processes at once, their timed parts aligned by a barrier."""
    if processes == 1:
        return [measure(*args)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_measure_in_child, args=(policy, args, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    rows = [results.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
    return rows


def project(row: dict[str, Any], train: int, val: int, batch: int, epochs: int, warmup: int) -> dict[str, float]:
    """Seconds of one epoch of each phase, of one evaluation, and of a trial that runs every epoch."""
    steps = math.ceil(train / batch)
    phase1, phase2 = steps * row["phase1_step_s"], steps * row["phase2_step_s"]
    evaluation = val * row["predict_image_s"]
    warm = min(warmup, epochs)
    trial = (warm * phase1 + (epochs - warm) * phase2 + epochs * evaluation
             + row["phase1_first_s"] + row["phase2_first_s"] + row["predict_first_s"])
    return {"epoch_phase1_s": phase1, "epoch_phase2_s": phase2, "evaluation_s": evaluation, "trial_s": trial}


def print_row(row: dict[str, Any], batch: int, epochs: int) -> None:
    print(f"\n{row['model']} (phase 2 at unfreeze depth {row['depth']}, the top of the sweep's range); "
          f"build {row['build_s']:.1f} s, loss finite: {row['finite_loss']}")
    print("| | phase 1 (head only) | phase 2 (unfrozen) | inference |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| first call (trace + compile), s | {row['phase1_first_s']:.1f} | {row['phase2_first_s']:.1f} | "
          f"{row['predict_first_s']:.1f} |")
    print(f"| steady, ms per batch of {batch} | {1e3 * row['phase1_step_s']:.1f} | "
          f"{1e3 * row['phase2_step_s']:.1f} | {1e3 * batch * row['predict_image_s']:.1f} |")
    print(f"| images/s | {batch / row['phase1_step_s']:,.0f} | {batch / row['phase2_step_s']:,.0f} | "
          f"{1 / row['predict_image_s']:,.0f} |")
    print(f"| one HAM10000 epoch / evaluation, s | {row['epoch_phase1_s']:.1f} | {row['epoch_phase2_s']:.1f} | "
          f"{row['evaluation_s']:.1f} |")
    print(f"augmentation: {100 * row['augmentation_share_phase1']:.0f} % of a phase-1 step; "
          f"a trial of all {epochs} epochs: {row['trial_s'] / 60:.1f} device-minutes "
          f"= {row['trial_s'] / 3600:.3f} device-hours")


def print_shared(shared: pd.DataFrame) -> None:
    """Aggregate images/s of N processes sharing the device, against one process (× 1)."""
    print("\nprocesses sharing the device (steady parts aligned by a barrier), images/s summed over processes:")
    print("| model | processes | phase 1 | × 1 | phase 2 | × 1 | inference | × 1 | first calls per process, s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for _, row in shared.iterrows():
        alone = shared[(shared["model"] == row["model"]) & (shared["processes"] == 1)]
        cells = []
        for part in ("phase1", "phase2", "predict"):
            value = row[f"{part}_images_s"]
            ratio = f"{value / alone[f'{part}_images_s'].iloc[0]:.2f}" if len(alone) else "-"
            cells += [f"{value:,.0f}", ratio]
        print(f"| {row['model']} | {row['processes']} | {' | '.join(cells)} | {row['first_call_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "ham10000-workstation.yaml")
    parser.add_argument("--models", nargs="+", help="default: the sweep's models")
    parser.add_argument("--size", type=int, help="image side (default: the sweep's)")
    parser.add_argument("--batch", type=int, help="batch size (default: the sweep's)")
    parser.add_argument("--steps", type=int, default=30, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per phase (the fastest counts)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="measure with this many processes sharing the device (1 2 4: compare)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    sweep = load_sweep(args.sweep)
    size, batch = args.size or sweep.data.image_size, args.batch or sweep.training.batch_size
    device = accelerator()
    policy = sweep.training.gpu_policy if device != "cpu" else "float32"
    keras.mixed_precision.set_global_policy(policy)
    train = round(HAM10000_IMAGES * (1 - sweep.data.val_fraction - sweep.data.test_fraction))
    val = round(HAM10000_IMAGES * sweep.data.val_fraction)
    epochs, warmup = sweep.training.epochs, sweep.training.warmup_epochs
    print(f"machine: {machine()}")
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, device {device}, policy {policy}; "
          f"{size} px, batch {batch}, {args.steps} batches per timed epoch, fastest of {args.repeats}")
    print(f"projected on HAM10000 as {args.sweep.name} splits it: ~{train} train and ~{val} val images, "
          f"{epochs} epochs of which {warmup} head-only")

    rng = np.random.default_rng(args.seed)
    aug_images = rng.integers(0, 256, (args.steps * batch, size, size, 3), dtype=np.uint8)
    aug_labels = rng.integers(0, NUM_CLASSES, args.steps * batch).astype("int32")
    aug = augmentation_seconds(size, aug_images, aug_labels, batch, args.repeats)
    print(f"augmentation block: {1e3 * aug['augmentation_step_s']:.1f} ms per step of {batch} "
          f"({1e3 * aug['augmentation_with_s']:.1f} ms with it, {1e3 * aug['augmentation_without_s']:.1f} ms "
          f"without, in a pooled linear model)")

    rows, shared = [], []
    for name in args.models or sweep.space.models:
        depth = sweep.space.unfreeze_depth[name].high
        for processes in args.processes:
            together = measure_together(processes, policy, name, depth, size, batch, args.steps, args.repeats,
                                        args.seed)
            if processes == 1:
                row = together[0]
                row.update(project(row, train, val, batch, epochs, warmup))
                row["augmentation_share_phase1"] = aug["augmentation_step_s"] / row["phase1_step_s"]
                rows.append(row)
                print_row(row, batch, epochs)
            shared.append({"model": name, "processes": processes,
                           **{f"{part}_images_s": sum(batch / r[f"{part}_step_s"] for r in together)
                              for part in ("phase1", "phase2")},
                           "predict_images_s": sum(1 / r["predict_image_s"] for r in together),
                           "first_call_s": sum(r["phase1_first_s"] + r["phase2_first_s"] + r["predict_first_s"]
                                               for r in together) / processes})
    if len(args.processes) > 1:
        print_shared(pd.DataFrame(shared))
    if args.out:
        args.out.write_text(json.dumps({"device": device, "backend": keras.backend.backend(), "policy": policy,
                                        "size": size, "batch": batch, "augmentation": aug, "rows": rows,
                                        "shared": shared}, indent=1))


if __name__ == "__main__":
    main()
