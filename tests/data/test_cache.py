"""The node-local image cache, built from the real HAM10000 sample at small sizes."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from PIL import Image

from hamtune import DataError
from hamtune.data import cache as cache_module
from hamtune.data.cache import ImageCache, decode_image, default_cache_dir, open_cache
from hamtune.data.index import DatasetIndex
from hamtune.errors import ConfigError

SIZE = 32
CACHE_LOGGER = "hamtune.data.cache"


def index_of(sample_dir: Path, count: int | None = None) -> DatasetIndex:
    """A DatasetIndex of the real sample's first `count` images, built without the layout reader."""
    metadata = pd.read_csv(sample_dir / "HAM10000_metadata.csv").sort_values("image_id")[:count]
    folder = sample_dir / "HAM10000_images_part_1"
    paths = [folder / f"{image_id}.jpg" for image_id in metadata["image_id"]]
    table = metadata[["image_id", "lesion_id", "dx"]].assign(
        path=[str(path) for path in paths], size_bytes=[path.stat().st_size for path in paths]
    )
    return DatasetIndex.from_table(sample_dir, "kaggle", table)


@pytest.fixture(scope="module")
def sample_index(sample_dir: Path) -> DatasetIndex:
    return index_of(sample_dir)


@pytest.fixture(scope="module")
def small_index(sample_dir: Path) -> DatasetIndex:
    return index_of(sample_dir, 12)


def reference_decode(path: str, size: int) -> np.ndarray:
    """Pillow by hand: JPEG draft, RGB, whole-image bilinear resize."""
    image = Image.open(path)
    image.draft("RGB", (size, size))
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def logged(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


def built(caplog: pytest.LogCaptureFixture) -> list[str]:
    return logged(caplog, "built image cache")


def test_default_cache_dir_prefers_hamtune_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("HAMTUNE_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "hamtune"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "hamtune"


def test_cache_matches_an_independent_pillow_decode(sample_index, tmp_path):
    cache = open_cache(sample_index, SIZE, tmp_path, workers=2)

    assert isinstance(cache, ImageCache) and len(cache) == 124
    assert cache.path == tmp_path / f"images-{sample_index.fingerprint}-{SIZE}px"
    assert cache.images.shape == (124, SIZE, SIZE, 3) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    assert list(cache.image_ids) == sample_index.table["image_id"].tolist()
    for row in (0, 57, 123):
        expected = reference_decode(sample_index.table["path"][row], SIZE)
        np.testing.assert_array_equal(cache.images[row], expected)

    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["fingerprint"] == sample_index.fingerprint
    assert manifest["image_size"] == SIZE and manifest["count"] == 124
    assert manifest["shape"] == [124, SIZE, SIZE, 3] and manifest["dtype"] == "uint8"
    assert manifest["image_ids"] == sample_index.table["image_id"].tolist()
    assert manifest["npy_bytes"] == (cache.path / "images.npy").stat().st_size
    assert manifest["build_seconds"] > 0 and manifest["hamtune_version"]
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries == [cache.path.name, f"{cache.path.name}.lock"]


def test_reduced_scale_decode_stays_close_to_a_full_decode(sample_index):
    path = sample_index.table["path"][0]
    full = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    difference = np.abs(decode_image(path, SIZE).astype(int) - np.asarray(full, int))
    assert difference.mean() < 3


def test_whole_image_is_squashed_not_cropped(tmp_path):
    pixels = np.full((450, 600, 3), 255, np.uint8)
    pixels[:, :40] = (255, 0, 0)  # a red band along the left border, 40 of 600 columns
    Image.fromarray(pixels).save(tmp_path / "border.png")
    image = decode_image(tmp_path / "border.png", SIZE)
    assert image.shape == (SIZE, SIZE, 3)
    assert (image[:, 0] == (255, 0, 0)).all()  # every row keeps the border
    assert (image[:, -1] == 255).all()


def test_second_open_reuses_the_entry(small_index, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)
    first = open_cache(small_index, SIZE, tmp_path)
    npy = first.path / "images.npy"
    before = npy.stat()
    second = open_cache(small_index, SIZE, tmp_path)
    after = npy.stat()

    assert len(built(caplog)) == 1
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    np.testing.assert_array_equal(first.images, second.images)


def test_build_logs_progress_with_rate_and_eta(small_index, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cache_module, "_PROGRESS_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)
    open_cache(small_index, SIZE, tmp_path)
    progress = logged(caplog, "image cache: ")
    assert len(progress) == 12
    assert re.fullmatch(r"image cache: 12/12 images \(\d+ images/s, ETA 0 s\)", progress[-1])


def test_sizes_are_separate_entries_that_do_not_block_each_other(small_index, tmp_path):
    entry_32 = tmp_path / f"images-{small_index.fingerprint}-32px"
    with FileLock(entry_32.with_name(entry_32.name + ".lock")).acquire(timeout=0):
        cache = open_cache(small_index, 16, tmp_path)
    assert cache.images.shape == (12, 16, 16, 3)
    assert not entry_32.exists()


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _open_in_child(index, cache_dir, barrier, results) -> None:
    """Open the cache once the other child is ready too; report (built, waited, pixel hash)."""
    collected = _Messages()
    logger = logging.getLogger(CACHE_LOGGER)
    logger.addHandler(collected)
    logger.setLevel(logging.INFO)
    barrier.wait()
    cache = open_cache(index, SIZE, cache_dir, workers=1)
    messages = collected.messages
    results.put((
        any(m.startswith("built image cache") for m in messages),
        any(m.startswith("waiting for another process building") for m in messages),
        hashlib.sha256(cache.images).hexdigest(),
    ))


def test_two_processes_opening_at_once_build_once(sample_index, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_open_in_child, args=(sample_index, tmp_path, barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0

    roles = sorted((built_it, waited) for built_it, waited, _ in outcomes)
    assert roles == [(False, True), (True, False)]  # one built, the other waited for it
    assert outcomes[0][2] == outcomes[1][2]
    assert not list(tmp_path.glob(".*tmp*"))


def _truncate_npy(entry: Path) -> None:
    npy = entry / "images.npy"
    npy.write_bytes(npy.read_bytes()[:-100])


def _flip_pixels(entry: Path) -> None:
    with (entry / "images.npy").open("r+b") as file:
        file.seek(-10, 2)
        tail = file.read()
        file.seek(-10, 2)
        file.write(bytes(255 - value for value in tail))


def _garble_manifest(entry: Path) -> None:
    (entry / "manifest.json").write_text('{"format_version": 1, "fingerp')


def _foreign_manifest(entry: Path) -> None:
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["image_ids"].reverse()
    (entry / "manifest.json").write_text(json.dumps(manifest))


def _rewrite_header(entry: Path) -> None:
    npy = entry / "images.npy"
    pixels = np.load(npy)
    np.save(npy, pixels.astype(np.int8))  # same size in bytes, different dtype in the header


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_npy, "images.npy has"),
        (lambda entry: (entry / "manifest.json").unlink(), "manifest.json is missing"),
        (_garble_manifest, "manifest.json is unreadable"),
        (lambda entry: (entry / "manifest.json").write_text("[1, 2]"), "not hold a JSON object"),
        (_foreign_manifest, "manifest field 'image_ids' does not match"),
        (lambda entry: (entry / "images.npy").unlink(), "images.npy is missing"),
        (_rewrite_header, "holds int8"),
        (_flip_pixels, "does not match the manifest checksum"),
    ],
    ids=["truncated", "no-manifest", "garbled", "list", "other-ids", "no-npy", "header", "bytes"],
)
def test_damaged_entry_is_detected_and_rebuilt(small_index, tmp_path, caplog, damage, reason):
    original = np.array(open_cache(small_index, SIZE, tmp_path).images)
    damage(tmp_path / f"images-{small_index.fingerprint}-{SIZE}px")
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)
    caplog.clear()  # only the second open counts (an in-process CLI test may have left INFO on)

    cache = open_cache(small_index, SIZE, tmp_path)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "is unusable" in warnings[0] and reason in warnings[0]
    assert len(built(caplog)) == 1
    np.testing.assert_array_equal(cache.images, original)


def test_leftover_of_an_interrupted_build_is_removed_and_rebuilt(small_index, tmp_path, caplog):
    leftover = tmp_path / f".images-{small_index.fingerprint}-{SIZE}px.tmp-killed"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"\x93NUMPY half written")
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)

    cache = open_cache(small_index, SIZE, tmp_path)

    assert not leftover.exists()
    assert any("left over from an interrupted build" in r.getMessage() for r in caplog.records)
    assert cache.images.shape == (12, SIZE, SIZE, 3) and len(built(caplog)) == 1


def test_undecodable_image_names_the_file_and_leaves_nothing_behind(sample_dir, tmp_path):
    index = index_of(sample_dir, 6)
    broken = tmp_path / "images" / "ISIC_broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    table = index.table.assign(path=index.table["path"].where(index.table.index != 3, str(broken)))
    cache_dir = tmp_path / "cache"

    message = r"cannot decode image .*ISIC_broken\.jpg.*hamtune data check"
    with pytest.raises(DataError, match=message):
        open_cache(DatasetIndex.from_table(sample_dir, "kaggle", table), SIZE, cache_dir)
    assert [p.name for p in cache_dir.iterdir()] == [f"images-{index.fingerprint}-{SIZE}px.lock"]


def test_positions_follow_the_order_asked_for(small_index, tmp_path):
    cache = open_cache(small_index, SIZE, tmp_path)
    ids = small_index.table["image_id"]
    np.testing.assert_array_equal(cache.positions([ids[5], ids[0], ids[5]]), [5, 0, 5])
    assert cache.positions(ids).dtype == np.int64


def test_positions_name_missing_ids(small_index, tmp_path):
    cache = open_cache(small_index, SIZE, tmp_path)
    message = r"2 image id\(s\) are not in the image cache .*: ISIC_9, ISIC_x \(open the cache"
    with pytest.raises(DataError, match=message):
        cache.positions([small_index.table["image_id"][0], "ISIC_9", "ISIC_x"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, r"`image_size` must be an int >= 1, got 0"),
        ({"image_size": 32.0}, r"`image_size` must be an int >= 1, got 32\.0"),
        ({"image_size": 32, "workers": 0}, r"`workers` must be None or an int >= 1, got 0"),
    ],
)
def test_invalid_arguments(small_index, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        open_cache(small_index, cache_dir=tmp_path, **kwargs)


def test_empty_and_duplicated_indexes_are_refused(small_index, tmp_path):
    empty = DatasetIndex.from_table(small_index.root, "kaggle", small_index.table[:0])
    with pytest.raises(DataError, match="holds no images: nothing to cache"):
        open_cache(empty, SIZE, tmp_path)
    doubled = pd.concat([small_index.table, small_index.table[:1]])
    first_id = small_index.table["image_id"][0]
    with pytest.raises(DataError, match=f"lists image id {first_id} more than once"):
        open_cache(DatasetIndex.from_table(small_index.root, "kaggle", doubled), SIZE, tmp_path)


def test_unwritable_cache_dir_is_reported(small_index, tmp_path):
    (tmp_path / "a-file").write_text("")
    message = r"cannot create the image cache directory .*a-file.*HAMTUNE_CACHE_DIR"
    with pytest.raises(DataError, match=message):
        open_cache(small_index, SIZE, tmp_path / "a-file" / "cache")


def test_not_enough_disk_space_is_reported_before_building(small_index, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**6))
    message = r"needs 2\.4 MB but .* has 1\.0 MB free .*smaller image_size"
    with pytest.raises(DataError, match=message):
        open_cache(small_index, 256, tmp_path)
    assert not list(tmp_path.glob("*px")) and not list(tmp_path.glob(".*"))
