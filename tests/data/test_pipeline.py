"""The tf.data pipeline over a memory-mapped uint8 image array whose rows are easy to recognise."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hamtune.data.pipeline import make_dataset
from hamtune.errors import ConfigError, DataError

ROWS, SIZE = 50, 8


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A read-only .npy memmap, like the cache's, where every pixel of row i equals i."""
    path = tmp_path_factory.mktemp("pipeline") / "images.npy"
    writer = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(ROWS, SIZE, SIZE, 3))
    writer[:] = np.arange(ROWS, dtype=np.uint8)[:, None, None, None]
    writer.flush()
    del writer
    return np.load(path, mmap_mode="r")


POSITIONS = np.array([7, 3, 41, 0, 49, 12, 25, 8, 30, 2, 19, 44, 5, 36, 21, 10, 48, 27, 33, 1])
LABELS = POSITIONS % 7


def rows_of(x: tf.Tensor) -> list[int]:
    """The row each image of a batch came from (all its pixels hold the row number)."""
    pixels = x.numpy().reshape(len(x), -1)
    assert (pixels == pixels[:, :1]).all()
    return pixels[:, 0].tolist()


def epoch(dataset: tf.data.Dataset) -> list[int]:
    return [row for x, *_ in dataset for row in rows_of(x)]


def test_batches_have_static_image_shapes_and_declared_dtypes(images):
    dataset = make_dataset(images, POSITIONS, LABELS, batch_size=8)
    x_spec, y_spec = dataset.element_spec
    assert x_spec.shape.as_list() == [None, SIZE, SIZE, 3] and x_spec.dtype == tf.uint8
    assert y_spec.shape.as_list() == [None] and y_spec.dtype == tf.int32
    x, y = next(iter(dataset))
    assert x.shape == (8, SIZE, SIZE, 3) and y.shape == (8,)


def test_evaluation_yields_every_position_once_in_order_with_the_last_partial_batch(images):
    batches = list(make_dataset(images, POSITIONS, LABELS, batch_size=8))
    assert [len(y) for _, y in batches] == [8, 8, 4]
    assert [row for x, _ in batches for row in rows_of(x)] == POSITIONS.tolist()
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == LABELS.tolist()


def test_repeated_positions_are_kept(images):
    positions = np.array([4, 4, 9])
    assert epoch(make_dataset(images, positions, positions % 7, batch_size=2)) == [4, 4, 9]


def test_shuffle_is_reproducible_per_seed_and_redrawn_every_epoch(images):
    first = make_dataset(images, POSITIONS, LABELS, batch_size=6, shuffle=True, seed=3)
    again = make_dataset(images, POSITIONS, LABELS, batch_size=6, shuffle=True, seed=3)
    other = make_dataset(images, POSITIONS, LABELS, batch_size=6, shuffle=True, seed=4)
    epochs = [epoch(first) for _ in range(3)]

    assert epochs == [epoch(again) for _ in range(3)]
    assert all(sorted(order) == sorted(POSITIONS.tolist()) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    assert epoch(other) != epochs[0]


def test_labels_and_weights_travel_with_their_images(images):
    weights = POSITIONS / 10
    dataset = make_dataset(images, POSITIONS, LABELS, weights, batch_size=6, shuffle=True, seed=1)
    _, _, w_spec = dataset.element_spec
    assert w_spec.dtype == tf.float32 and w_spec.shape.as_list() == [None]
    for x, y, w in dataset:
        rows = np.array(rows_of(x))
        np.testing.assert_array_equal(y.numpy(), rows % 7)
        np.testing.assert_allclose(w.numpy(), rows / 10, rtol=1e-6)


def test_keras_fit_reads_the_third_element_as_sample_weights(images):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Flatten(),
        keras.layers.Dense(7, activation="softmax"),
    ])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")

    def loss(weights: np.ndarray) -> float:
        dataset = make_dataset(images, POSITIONS, LABELS, weights, batch_size=8)
        return model.evaluate(dataset, verbose=0)

    assert loss(np.zeros(len(POSITIONS))) == 0.0
    assert loss(np.ones(len(POSITIONS))) > 0.5
    training = make_dataset(images, POSITIONS, LABELS, batch_size=8, shuffle=True)
    history = model.fit(training, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def bad(**changes: object) -> dict[str, object]:
    arguments: dict[str, object] = {"positions": POSITIONS, "labels": LABELS}
    return {**arguments, **changes}


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (bad(batch_size=0), ConfigError, r"`batch_size` must be an int >= 1, got 0"),
        (bad(batch_size=True), ConfigError, r"`batch_size` must be an int >= 1, got True"),
        (bad(positions=np.array([], int), labels=np.array([], int)), DataError,
         r"`positions` must be a non-empty 1-D integer array, got int64 of shape \[0\]"),
        (bad(positions=POSITIONS.astype(float)), DataError, r"1-D integer array, got float64"),
        (bad(positions=POSITIONS + 1), DataError,
         r"`positions` must be rows of `images`, in \[0, 50\), got values from 1 to 50"),
        (bad(positions=POSITIONS - 1), DataError, r"got values from -1 to 48"),
        (bad(labels=LABELS[:-1]), DataError,
         r"`labels` must hold one value per position \(20\), got shape \[19\]"),
        (bad(labels=LABELS + 1), DataError,
         r"`labels` must be class indices in \[0, 7\), got int64 values from 1 to 7"),
        (bad(sample_weights=np.ones(3)), DataError,
         r"`sample_weights` must hold one value per position \(20\), got shape \[3\]"),
        (bad(sample_weights=-np.ones(20)), DataError, r"`sample_weights` must be finite numbers"),
        (bad(sample_weights=np.full(20, np.nan)), DataError, r"finite numbers >= 0"),
    ],
)
def test_invalid_inputs(images, arguments, error, message):
    with pytest.raises(error, match=message):
        make_dataset(images, **arguments)


@pytest.mark.parametrize(
    ("array", "shown"),
    [
        (np.zeros((4, SIZE, SIZE, 3), np.float32), r"float32 of shape \[4, 8, 8, 3\]"),
        (np.zeros((4, SIZE, SIZE), np.uint8), r"uint8 of shape \[4, 8, 8\]"),
        ([[0]], "list"),
    ],
)
def test_images_must_be_a_uint8_image_array(array, shown):
    message = r"`images` must be a uint8 array of shape \[N, S, S, 3\], got "
    with pytest.raises(DataError, match=message + shown):
        make_dataset(array, POSITIONS[:1] * 0, LABELS[:1])


@pytest.mark.parametrize(
    "source", ["in-memory", "read-only in-memory", "memmap slice", "unaligned", "non-contiguous"]
)
def test_arrays_that_are_not_a_whole_read_only_memmap_are_read_too(images, source):
    """Arrays TF cannot borrow (read-only, unaligned, strided) are copied, with the same rows."""
    unaligned = np.empty(images.nbytes + 1, np.uint8)[1:].reshape(images.shape)
    unaligned[:] = images
    arrays = {
        "in-memory": np.array(images),
        "read-only in-memory": np.array(images),
        "memmap slice": images[10:],
        "unaligned": unaligned,
        "non-contiguous": np.asfortranarray(images),
    }
    array = arrays[source]
    if source == "read-only in-memory":
        array.flags.writeable = False
    offset = 10 if source == "memmap slice" else 0
    positions = np.array([0, 5, 3, 39])
    assert epoch(make_dataset(array, positions, positions % 7, batch_size=3)) == (
        positions + offset
    ).tolist()
