"""The input pipeline without TensorFlow: batches gathered from the image cache in Python.

For Keras on JAX, where tf.data is not there to use (a GPU machine may have no TensorFlow at
all). The cached images are already uint8 at the model's size and the augmentation is in the
model, so a batch is one fancy-index gather from the memory-mapped cache: about one memcpy,
reading the page cache that every trial on a node shares.

Keras reads the batches in the training loop's own thread, with no worker threads: JAX
dispatches each step asynchronously, so the next gather already overlaps the device's step, and
on 2 cores Keras's 2-thread enqueuer delivered a third of the images/s of plain reads (10,300
against 29,900 at 224 px; benchmarks/input_pipeline.py, which also times tf.data's pipeline).
"""

from __future__ import annotations

import math

import keras
import numpy as np

class CacheBatches(keras.utils.PyDataset):
    """Batches `(x uint8 [B,S,S,3], y int32 [B])`, plus `w float32 [B]` when weights are given.

    Arguments as `hamtune.data.pipeline.make_dataset` takes them, already validated. With
    `shuffle`, the order is redrawn at the end of every epoch from a generator seeded by `seed`;
    without it the split comes in order, the last partial batch included.
    """

    def __init__(self, images: np.ndarray, positions: np.ndarray, labels: np.ndarray,
                 sample_weights: np.ndarray | None, batch_size: int, shuffle: bool, seed: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self._images = images
        self._columns = (positions, labels) if sample_weights is None else (positions, labels, sample_weights)
        self._batch_size = batch_size
        self._rng = np.random.default_rng(seed) if shuffle else None
        self._order = self._draw()

    def _draw(self) -> np.ndarray:
        count = len(self._columns[0])
        return np.arange(count) if self._rng is None else self._rng.permutation(count)

    def __len__(self) -> int:
        return math.ceil(len(self._order) / self._batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self._order[index * self._batch_size:(index + 1) * self._batch_size]
        positions, *rest = (column[rows] for column in self._columns)
        return (self._images[positions], *rest)

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._order = self._draw()
