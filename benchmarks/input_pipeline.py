"""Input-pipeline benchmark: the notebook's per-epoch JPEG decoding vs hamtune's image cache.

    python benchmarks/input_pipeline.py [--data DIR] [--size 224] [--epochs 5] [--batch-size 32]

Times, on the same images and in one run:
  (a) notebook   read_file + decode_jpeg + resize every epoch (tf.data, AUTOTUNE parallel map);
  (b) hamtune    `make_dataset` over `open_cache` (build time reported apart, warm epochs);
  (c) numpy      batch gathers out of the same memmap with no TensorFlow: the upper limit.
Each pipeline gets one warm-up epoch, then `--epochs` timed shuffled epochs, each from a fresh
iterator as Keras `fit` does. Default data: the real 124-image HAM10000 sample (CC BY-NC 4.0,
Tschandl et al., Scientific Data 2018).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from hamtune.data.cache import open_cache
from hamtune.data.layout import load_dataset
from hamtune.data.pipeline import make_dataset

if TYPE_CHECKING:
    import tensorflow as tf

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000-sample"

#: An epoch: a fresh iterator over the sizes of its batches (each batch fully materialised).
Epoch = Callable[[], Iterator[int]]


class Timing(NamedTuple):
    images_per_s: float
    first_batch_ms: float


def time_epochs(epoch: Epoch, epochs: int) -> Timing:
    """Throughput over whole epochs, after one warm-up epoch, and the mean wait for a first batch.

    The wait for the first batch (iterator start-up, pipeline fill) is paid once per epoch, so
    short epochs, such as the 124-image sample's 4 batches, weigh it far more than real ones.
    """
    sum(epoch())
    images = 0
    total = first = 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        batches = epoch()
        images += next(batches)
        first += time.perf_counter() - started
        images += sum(batches)
        total += time.perf_counter() - started
    return Timing(images / total, 1e3 * first / epochs)


def dataset_epoch(dataset: tf.data.Dataset) -> Epoch:
    return lambda: (int(batch[0].shape[0]) for batch in dataset)


def notebook_dataset(
    paths: list[str], labels: np.ndarray, size: int, batch_size: int
) -> tf.data.Dataset:
    """The original notebook's pipeline: decode and resize every JPEG again in every epoch."""
    import tensorflow as tf

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (size, size)), label

    return (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .shuffle(len(paths), seed=0, reshuffle_each_iteration=True)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def numpy_epoch(images: np.ndarray, positions: np.ndarray, batch_size: int) -> Epoch:
    """The upper limit: shuffled batch gathers from the memmap, nothing else."""
    rng = np.random.default_rng(0)

    def batches() -> Iterator[int]:
        order = rng.permutation(positions)
        for start in range(0, len(order), batch_size):
            yield len(images[order[start : start + batch_size]])

    return batches


def machine() -> str:
    import tensorflow as tf

    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({models[0] if models else platform.processor()}), "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, numpy {np.__version__}, "
        f"load average {load}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle/ISIC 2018 layout")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, help="default: a fresh temporary directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    index = load_dataset(args.data)
    labels = index.table["label"].to_numpy()
    with tempfile.TemporaryDirectory(prefix="hamtune-bench-") as scratch:
        started = time.perf_counter()
        cache = open_cache(index, args.size, args.cache_dir or Path(scratch))
        build_seconds = time.perf_counter() - started
        positions = cache.positions(index.table["image_id"])
        pipelines = {
            "(a) notebook: decode+resize per epoch": dataset_epoch(
                notebook_dataset(index.table["path"].tolist(), labels, args.size, args.batch_size)
            ),
            "(b) hamtune: make_dataset over open_cache": dataset_epoch(
                make_dataset(cache.images, positions, labels, batch_size=args.batch_size,
                             shuffle=True)
            ),
            "(c) upper limit: numpy gathers from memmap": numpy_epoch(
                cache.images, positions, args.batch_size
            ),
        }
        timings = {name: time_epochs(epoch, args.epochs) for name, epoch in pipelines.items()}

    table = pd.DataFrame(timings, index=["images/s", "first batch ms"]).T
    table["x notebook"] = table["images/s"] / table["images/s"].iloc[0]
    table["% of upper limit"] = 100 * table["images/s"] / table["images/s"].iloc[-1]
    print(
        f"\n{len(index)} images from {args.data}, {args.size} px, batch {args.batch_size}, "
        f"{args.epochs} timed epochs after 1 warm-up each"
    )
    print(
        f"cache open, building it if absent (excluded from throughput): {build_seconds:.2f} s "
        f"({len(index) / build_seconds:.0f} images/s), {cache.images.nbytes / 1e6:.1f} MB"
    )
    print(f"machine: {machine()}\n")
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
