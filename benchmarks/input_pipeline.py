"""Input-pipeline benchmark: the notebook's per-epoch JPEG decoding vs hamtune's image cache.

    python benchmarks/input_pipeline.py [--data DIR | --synthetic N] [--size 224] [--epochs 5]

Times, on the same images and in one run:
  (a)  notebook   read_file + decode_jpeg + resize + random flip/rotation/zoom/brightness/
                  contrast per image, every epoch, in the tf.data map (AUTOTUNE parallel);
  (a0) the same without the augmentation;
  (b)  hamtune    `make_dataset` over `open_cache`, each batch then augmented as the model does
                  (`hamtune.training.augment.build_augmentation`, training=True, in a tf.function);
  (b0) hamtune    `make_dataset` alone (the model does the augmentation);
  (b1) before     the pipeline as it was before the in-graph gather: one `tf.numpy_function`
                  gather per batch, AUTOTUNE, default tf.data optimisations;
  (d)  JAX path   `CacheBatches`, the PyDataset gather `make_dataset` returns when Keras runs on
                  JAX (no TensorFlow), read through Keras's own PyDataset adapter as `fit` does
                  (2 worker threads, 2 batches queued);
  (d0) the same PyDataset read in the calling thread, no workers;
  (c)  numpy      batch gathers out of the same memmap with no TensorFlow: the upper limit.
Each pipeline gets one warm-up epoch, then `--epochs` timed shuffled epochs, each from a fresh
iterator as Keras `fit` does. Default data: the real 124-image HAM10000 sample (CC BY-NC 4.0,
Tschandl et al., Scientific Data 2018); `--synthetic N` writes N synthetic 600x450 JPEGs
(`hamtune.data.synth`) for realistic epoch lengths.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from hamtune.training.augment import (
    BRIGHTNESS_FACTOR,
    CONTRAST_FACTOR,
    ROTATION_FACTOR,
    ZOOM_FACTOR,
)
from hamtune.data.batches import CacheBatches
from hamtune.data.cache import open_cache
from hamtune.data.layout import load_dataset
from hamtune.data.pipeline import make_dataset
from hamtune.data.synth import write_synthetic
from machine import machine  # benchmarks/machine.py

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


def augmented_epoch(dataset: tf.data.Dataset) -> Epoch:
    """Each batch augmented as hamtune's model does it: uint8 -> float32 -> augmentation block.

    In a trial this runs inside the model's training step, on the GPU when there is one; here
    it runs on the same CPU cores as the pipeline.
    """
    import tensorflow as tf

    from hamtune.training.augment import build_augmentation

    augmentation = build_augmentation(seed=0)
    step = tf.function(lambda x: augmentation(tf.cast(x, "float32"), training=True))
    return lambda: (int(step(batch[0]).shape[0]) for batch in dataset)


def cpu_augment(image: tf.Tensor) -> tf.Tensor:
    """The notebook's per-image CPU augmentation with hamtune's factors, as tf.image ops.

    Flips; one projective transform for rotation (±ROTATION_FACTOR of a full turn) and zoom
    (±ZOOM_FACTOR), reflect-filled as Keras does; brightness and contrast.
    """
    import tensorflow as tf

    image = tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))
    side = tf.cast(tf.shape(image)[0], tf.float32)
    angle = tf.random.uniform([], -ROTATION_FACTOR, ROTATION_FACTOR) * 2 * np.pi
    zoom = tf.random.uniform([], 1 - ZOOM_FACTOR, 1 + ZOOM_FACTOR)
    cos, sin, centre = zoom * tf.cos(angle), zoom * tf.sin(angle), (side - 1) / 2
    transform = [cos, -sin, centre * (1 - cos + sin), sin, cos, centre * (1 - sin - cos), 0.0, 0.0]
    image = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.stack(transform)[None],
        output_shape=tf.shape(image)[:2], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]
    image = tf.image.random_brightness(image, BRIGHTNESS_FACTOR * 255)
    image = tf.image.random_contrast(image, 1 - CONTRAST_FACTOR, 1 + CONTRAST_FACTOR)
    return tf.clip_by_value(image, 0.0, 255.0)


def notebook_dataset(
    paths: list[str], labels: np.ndarray, size: int, batch_size: int, augment: bool
) -> tf.data.Dataset:
    """The original notebook's pipeline: decode, resize (and augment) every JPEG every epoch."""
    import tensorflow as tf

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (size, size))
        return (cpu_augment(image) if augment else image), label

    return (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .shuffle(len(paths), seed=0, reshuffle_each_iteration=True)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def numpy_function_dataset(
    images: np.ndarray, positions: np.ndarray, batch_size: int
) -> tf.data.Dataset:
    """hamtune's pipeline before the in-graph gather (the baseline of that change)."""
    import tensorflow as tf

    def gather(batch_positions: np.ndarray) -> np.ndarray:
        return images[batch_positions]

    def load(batch: tf.Tensor) -> tuple[tf.Tensor]:
        x = tf.numpy_function(gather, [tf.gather(positions, batch)], tf.uint8, stateful=False)
        x.set_shape([None, *images.shape[1:]])
        return (x,)

    return (
        tf.data.Dataset.range(len(positions))
        .shuffle(len(positions), seed=0, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def py_dataset_epoch(batches: CacheBatches, workers: int) -> Epoch:
    """Epochs of a PyDataset as Keras's `fit` reads it: its adapter (a private Keras module, the
    one every backend uses), which starts `workers` threads per epoch and tells the dataset when
    an epoch ends so that it reshuffles."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    batches.workers = workers
    adapter = PyDatasetAdapter(batches, shuffle=False)

    def epoch() -> Iterator[int]:
        adapter.on_epoch_begin()
        for batch in adapter.get_numpy_iterator():
            yield len(batch[0])
        adapter.on_epoch_end()

    return epoch


def numpy_epoch(images: np.ndarray, positions: np.ndarray, batch_size: int) -> Epoch:
    """The upper limit: shuffled batch gathers from the memmap, nothing else."""
    rng = np.random.default_rng(0)

    def batches() -> Iterator[int]:
        order = rng.permutation(positions)
        for start in range(0, len(order), batch_size):
            yield len(images[order[start : start + batch_size]])

    return batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle/ISIC 2018 layout")
    parser.add_argument("--synthetic", type=int, help="use N synthetic images instead of --data")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, help="default: a fresh temporary directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="hamtune-bench-") as scratch:
        data = args.data
        if args.synthetic:
            data = write_synthetic(Path(scratch) / "synthetic", images=args.synthetic)
        index = load_dataset(data)
        labels = index.table["label"].to_numpy()
        paths = index.table["path"].tolist()
        started = time.perf_counter()
        cache = open_cache(index, args.size, args.cache_dir or Path(scratch))
        build_seconds = time.perf_counter() - started
        positions = cache.positions(index.table["image_id"])

        def hamtune_dataset() -> tf.data.Dataset:
            return make_dataset(cache.images, positions, labels, batch_size=args.batch_size,
                                shuffle=True)

        def cache_batches() -> CacheBatches:
            return CacheBatches(cache.images, positions, labels, None, args.batch_size, shuffle=True, seed=0)

        pipelines = {
            ("(a) notebook: decode+resize+augment per epoch", "tf.data map, per image, CPU"):
                dataset_epoch(notebook_dataset(paths, labels, args.size, args.batch_size, True)),
            ("(a0) notebook without augmentation", "none"):
                dataset_epoch(notebook_dataset(paths, labels, args.size, args.batch_size, False)),
            ("(b) hamtune: cache + in-graph augmentation", "model graph, per batch (CPU here)"):
                augmented_epoch(hamtune_dataset()),
            ("(b0) hamtune: make_dataset alone", "none (the model does it)"):
                dataset_epoch(hamtune_dataset()),
            ("(b1) before: numpy_function per batch", "none (the model does it)"):
                dataset_epoch(numpy_function_dataset(cache.images, positions, args.batch_size)),
            ("(d) JAX path: CacheBatches (PyDataset), 2 threads", "none (the model does it)"):
                py_dataset_epoch(cache_batches(), workers=2),
            ("(d0) JAX path: CacheBatches, no worker threads", "none (the model does it)"):
                py_dataset_epoch(cache_batches(), workers=1),
            ("(c) upper limit: numpy gathers from memmap", "none"):
                numpy_epoch(cache.images, positions, args.batch_size),
        }
        timings = {name: time_epochs(epoch, args.epochs) for name, epoch in pipelines.items()}

    table = pd.DataFrame(timings, index=["images/s", "first batch ms"]).T
    table.index.names = ["pipeline", "augmentation runs in"]
    table["x notebook"] = table["images/s"] / table["images/s"].iloc[0]
    table["% of upper limit"] = 100 * table["images/s"] / table["images/s"].iloc[-1]
    print(
        f"\n{len(index)} images from {data}, {args.size} px, batch {args.batch_size}, "
        f"{args.epochs} timed epochs after 1 warm-up each"
    )
    print(
        f"cache open, building it if absent (excluded from throughput): {build_seconds:.2f} s "
        f"({len(index) / build_seconds:.0f} images/s), {cache.images.nbytes / 1e6:.1f} MB"
    )
    import tensorflow as tf

    print(f"machine: {machine()}, TensorFlow {tf.__version__}, numpy {np.__version__}\n")
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
