"""The input pipeline over the image cache: one gather per batch, no per-image work.

`make_dataset` serves both Keras backends: tf.data (below) where Keras runs on TensorFlow, and
`hamtune.data.batches.CacheBatches`, a Python batch gather without TensorFlow, elsewhere (JAX).

Per-element `map`s cost tens of microseconds each in tf.data; gathering a whole batch of rows
from the (memory-mapped) cache in one `tf.gather` costs about one memcpy. So the dataset
shuffles and batches only *indices*, then turns each index batch into images with a single
gather, and prefetches so the copy overlaps the training step.

The gather reads a tensor that *shares* the cache's memory (DLPack over a copy-on-write mapping
of the same file, which TF only reads): every trial on a node keeps reading the one copy in the
OS page cache, as a numpy memmap would, but without a Python call per batch (a
`tf.numpy_function` per batch delivered about half as many images/s on 2 cores, see
benchmarks/README.md). tf.data's default graph optimisations are off because they serialise
the dataset graph, which copies that captured tensor into every process (1.5 GB per trial for
the full dataset at 224 px); autotuning is off because each Keras epoch starts a fresh iterator
that would tune from scratch: a gather needs no more than 2 parallel calls and 2 batches ahead.
"""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING

import numpy as np

from hamtune.errors import ConfigError, DataError
from hamtune.labels import NUM_CLASSES

if TYPE_CHECKING:
    import tensorflow as tf

    from hamtune.data.batches import CacheBatches


def make_dataset(
    images: np.ndarray,
    positions: np.ndarray,
    labels: np.ndarray,
    sample_weights: np.ndarray | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset | CacheBatches:
    """Batches `(x uint8 [B,S,S,3], y int32 [B])`, plus `w float32 [B]` when weights are given.

    Element i is `images[positions[i]]` with `labels[i]` (and `sample_weights[i]`). With
    `shuffle`, the order is redrawn every epoch, reproducibly for a given `seed`; without it the
    whole split comes in order, the last partial batch included, as evaluation needs. A
    `tf.data.Dataset` when Keras runs on TensorFlow, else a `CacheBatches` (no TensorFlow).
    """
    positions, labels, sample_weights = _validated(
        images, positions, labels, sample_weights, batch_size
    )
    import keras

    if keras.backend.backend() != "tensorflow":
        from hamtune.data.batches import CacheBatches

        return CacheBatches(images, positions, labels, sample_weights, batch_size, shuffle, seed)
    return _tf_dataset(images, positions, labels, sample_weights, batch_size, shuffle, seed)


def _tf_dataset(
    images: np.ndarray,
    positions: np.ndarray,
    labels: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """The tf.data pipeline of `make_dataset`, over validated arrays."""
    import tensorflow as tf

    cache = _shared_tensor(images)
    columns = [tf.constant(positions), tf.constant(labels)]
    if sample_weights is not None:
        columns.append(tf.constant(sample_weights))

    def load(batch: tf.Tensor) -> tuple[tf.Tensor, ...]:
        batch_positions, *rest = (tf.gather(column, batch) for column in columns)
        return (tf.gather(cache, batch_positions), *rest)

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    if shuffle:
        # Drawn by NumPy, as `CacheBatches` draws it, not by `Dataset.shuffle`: that one also
        # follows TensorFlow's global seed, which hamtune never sets (`training.device.set_seed`).
        # Each iteration (epoch) draws the next permutation of the same generator.
        rng = np.random.default_rng(seed)
        order = tf.data.Dataset.from_generator(
            lambda: iter((rng.permutation(len(positions)),)),
            output_signature=tf.TensorSpec([len(positions)], tf.int64),
        ).unbatch().apply(tf.data.experimental.assert_cardinality(len(positions)))  # Keras counts the steps
    else:
        order = tf.data.Dataset.range(len(positions))
    return (
        order.batch(batch_size)
        .map(load, num_parallel_calls=_PARALLEL_BATCHES, deterministic=True)
        .prefetch(_PARALLEL_BATCHES)
        .with_options(options)
    )


#: Batches gathered in parallel and kept ready ahead of the training step.
_PARALLEL_BATCHES = 2
#: Byte alignment TensorFlow requires of a buffer it borrows (EIGEN_MAX_ALIGN_BYTES).
_TF_ALIGNMENT = 64


def _shared_tensor(images: np.ndarray) -> tf.Tensor:
    """A tensor over the same memory as `images`: a read-only memmap stays shared, not copied.

    DLPack only exports writable arrays, so a read-only memmap (the cache's) is reopened
    copy-on-write: the same page-cache pages, and TF never writes to them. TF needs the buffer
    C-contiguous and 64-byte aligned (the .npy format aligns its data to 64 bytes); any other
    array is copied once into a TF-owned buffer.
    """
    import tensorflow as tf

    if isinstance(images.base, mmap.mmap) and not images.flags.writeable:
        images = np.memmap(
            images.filename, mode="c", dtype=images.dtype, shape=images.shape, offset=images.offset
        )
    shareable = images.flags.writeable and images.flags.c_contiguous
    if shareable and images.ctypes.data % _TF_ALIGNMENT == 0:
        return tf.experimental.dlpack.from_dlpack(images.__dlpack__())
    return tf.constant(images)


def _validated(
    images: np.ndarray,
    positions: np.ndarray,
    labels: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`positions` as int64, `labels` as int32, weights as float32, after checking them."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[3] == 3):
        got = _describe(images) if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"`images` must be a uint8 array of shape [N, S, S, 3], got {got}")
    positions = np.asarray(positions)
    if positions.ndim != 1 or len(positions) == 0 or not np.issubdtype(positions.dtype, np.integer):
        raise DataError(
            f"`positions` must be a non-empty 1-D integer array, got {_describe(positions)}"
        )
    if positions.min() < 0 or positions.max() >= len(images):
        raise DataError(
            f"`positions` must be rows of `images`, in [0, {len(images)}), "
            f"got values from {positions.min()} to {positions.max()}"
        )
    labels = _one_per_position("labels", labels, len(positions))
    integers = np.issubdtype(labels.dtype, np.integer)
    if not integers or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(
            f"`labels` must be class indices in [0, {NUM_CLASSES}), got {labels.dtype} "
            f"values from {labels.min()} to {labels.max()}"
        )
    if sample_weights is not None:
        sample_weights = _one_per_position("sample_weights", sample_weights, len(positions))
        if not (np.issubdtype(sample_weights.dtype, np.number)
                and np.all(np.isfinite(sample_weights) & (sample_weights >= 0))):
            raise DataError("`sample_weights` must be finite numbers >= 0")
        sample_weights = sample_weights.astype(np.float32)
    return positions.astype(np.int64), labels.astype(np.int32), sample_weights


def _one_per_position(name: str, values: np.ndarray, count: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (count,):
        raise DataError(
            f"`{name}` must hold one value per position ({count}), got shape {list(values.shape)}"
        )
    return values


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} of shape {list(array.shape)}"
