"""Node-local cache of decoded, resized uint8 images, built once and shared by every trial.

Decoding a 600×450 JPEG costs far more than a training step needs from the input side: a GPU
fed by per-epoch decoding waits on the CPU. So every image of a `DatasetIndex` is decoded and
resized once per node into `images.npy` ([N, S, S, 3] uint8, rows in `index.table` order) and
every trial maps that file read-only, sharing the OS page cache.

Preprocessing: the whole image is squashed to S×S (600×450 → S×S, no crop, so lesions at the
border are kept), bilinear with antialiasing (Pillow's resize widens the filter when it
downscales). JPEGs decode at a reduced DCT scale first (`Image.draft`), never below S pixels
on either side: about twice as fast (224 px: 260 instead of 136 images/s per thread on the
2-core reference machine), within ~1 grey level on average of a full-scale decode.

Integrity: an entry is built in a temporary directory and renamed into place, so it is either
complete or absent. On open the manifest fields, the exact file size, the npy header and a
sha256 of 256 evenly spaced 64 KiB blocks (the whole file when it is smaller than 16 MiB) are
checked. A full sha256 would cost every trial ~0.8 s per GB even from the page cache (1.2 s for
the 1.5 GB cache of all 10,015 images at 224 px, measured on the 2-core reference machine) and
a whole disk read when cold; the sampled one reads 16 MiB (~15 ms) and, with the size and
header checks, catches truncated or overwritten files and garbled or foreign manifests. An
entry that fails any check is logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hamtune.version import __version__
from hamtune.data.index import DatasetIndex
from hamtune.errors import ConfigError, DataError
from hamtune.locking import node_lock

logger = logging.getLogger(__name__)

#: Bump when the preprocessing or the file layout changes: older entries are then rebuilt.
FORMAT_VERSION = 1
_CHECK_BLOCKS = 256
_CHECK_BLOCK_BYTES = 64 * 1024
_PROGRESS_SECONDS = 5.0


@dataclass(frozen=True, eq=False)
class ImageCache:
    """An opened cache entry: `images` is a read-only memmap, row i holds `image_ids[i]`."""

    path: Path
    images: np.ndarray
    image_ids: pd.Index

    def __len__(self) -> int:
        return len(self.image_ids)

    def positions(self, image_ids: Iterable[str]) -> np.ndarray:
        """Rows of `images` holding `image_ids`, in the order given."""
        wanted = pd.Index(list(image_ids), dtype=object)
        found = self.image_ids.get_indexer(wanted)
        missing = wanted[found < 0]
        if len(missing):
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"{len(missing)} image id(s) are not in the image cache {self.path}: {shown} "
                "(open the cache with the same dataset index the ids come from)"
            )
        return found.astype(np.int64)


def default_cache_dir() -> Path:
    """`$HAMTUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/hamtune`, else `~/.cache/hamtune`."""
    if explicit := os.environ.get("HAMTUNE_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "hamtune"
    return Path.home() / ".cache" / "hamtune"


def decode_image(path: str | Path, image_size: int) -> np.ndarray:
    """Decode one image file to the cache's [S, S, 3] uint8 form (the one preprocessing recipe)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))
            rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"cannot decode image {path}: {exc} "
            "(run `hamtune data check` to list every unreadable image)"
        ) from exc
    return np.asarray(rgb)


def open_cache(
    index: DatasetIndex,
    image_size: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> ImageCache:
    """Open the cache entry of (`index`, `image_size`), building it first if absent or broken.

    Safe across processes: one process builds while the others wait on a per-entry file lock
    and then reuse the result; entries of other sizes or datasets do not block each other.
    `workers` decoding threads default to the CPUs this process may use.
    """
    _check_arguments(index, image_size, workers)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the image cache directory {cache_dir}: {exc} "
            "(set HAMTUNE_CACHE_DIR to a writable node-local directory)"
        ) from exc
    entry = cache_dir / f"images-{index.fingerprint}-{image_size}px"
    if _problem(entry, index, image_size) is None:
        return _load(entry, index)

    with node_lock(entry.with_name(entry.name + ".lock"), logger, f"building {entry}"):
        problem = _problem(entry, index, image_size)
        if problem is None:
            return _load(entry, index)
        if entry.is_dir():
            logger.warning("image cache %s is unusable (%s); rebuilding it", entry, problem)
            shutil.rmtree(entry)
        for leftover in sorted(cache_dir.glob(f".{entry.name}.tmp-*")):
            logger.warning("removing %s, left over from an interrupted build", leftover)
            shutil.rmtree(leftover)
        _build(entry, index, image_size, workers or _usable_cpus())
        return _load(entry, index)


def _check_arguments(index: DatasetIndex, image_size: int, workers: int | None) -> None:
    if not _is_positive_int(image_size):
        raise ConfigError(f"`image_size` must be an int >= 1, got {image_size!r}")
    if workers is not None and not _is_positive_int(workers):
        raise ConfigError(f"`workers` must be None or an int >= 1, got {workers!r}")
    if len(index) == 0:
        raise DataError(f"the dataset index of {index.root} holds no images: nothing to cache")
    duplicated = index.table["image_id"][index.table["image_id"].duplicated()]
    if len(duplicated):
        raise DataError(
            f"the dataset index of {index.root} lists image id {duplicated.iloc[0]} more than once"
        )


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _expected_fields(index: DatasetIndex, image_size: int) -> dict[str, object]:
    count = len(index)
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": index.fingerprint,
        "image_size": image_size,
        "count": count,
        "shape": [count, image_size, image_size, 3],
        "dtype": "uint8",
        "image_ids": index.table["image_id"].tolist(),
    }


def _problem(entry: Path, index: DatasetIndex, image_size: int) -> str | None:
    """Why `entry` cannot be used for (`index`, `image_size`), or None when it can."""
    if not entry.is_dir():
        return "missing"
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except FileNotFoundError:
        return "manifest.json is missing"
    except (OSError, ValueError) as exc:
        return f"manifest.json is unreadable: {exc}"
    if not isinstance(manifest, dict):
        return "manifest.json does not hold a JSON object"
    for key, value in _expected_fields(index, image_size).items():
        if manifest.get(key) != value:
            return f"manifest field {key!r} does not match the dataset"
    npy = entry / "images.npy"
    try:
        with npy.open("rb") as file:
            file_size = os.fstat(file.fileno()).st_size
            expected_size = manifest.get("npy_bytes")
            if file_size != expected_size:
                return f"images.npy has {file_size} bytes, the manifest says {expected_size!r}"
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
            data_offset = file.tell()
    except FileNotFoundError:
        return "images.npy is missing"
    except (OSError, ValueError) as exc:
        return f"images.npy has no valid npy header: {exc}"
    if list(shape) != manifest["shape"] or fortran_order or dtype != np.uint8:
        return f"images.npy holds {dtype} {list(shape)}, not uint8 {manifest['shape']}"
    if data_offset + int(np.prod(shape)) != file_size:
        return "images.npy size does not match its header"
    if manifest.get("checksum") != _checksum(npy):
        return "images.npy does not match the manifest checksum"
    return None


def _checksum(path: Path) -> dict[str, object]:
    """sha256 of 256 evenly spaced 64 KiB blocks of `path` (all of it when smaller)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as file:
        if size <= _CHECK_BLOCKS * _CHECK_BLOCK_BYTES:
            digest.update(file.read())
        else:
            for offset in np.linspace(0, size - _CHECK_BLOCK_BYTES, _CHECK_BLOCKS, dtype=np.int64):
                file.seek(int(offset))
                digest.update(file.read(_CHECK_BLOCK_BYTES))
    return {
        "algorithm": "sha256-sampled",
        "blocks": _CHECK_BLOCKS,
        "block_bytes": _CHECK_BLOCK_BYTES,
        "value": digest.hexdigest(),
    }


def _load(entry: Path, index: DatasetIndex) -> ImageCache:
    images = np.load(entry / "images.npy", mmap_mode="r")
    image_ids = pd.Index(index.table["image_id"], dtype=object)
    return ImageCache(path=entry, images=images, image_ids=image_ids)


def _build(entry: Path, index: DatasetIndex, image_size: int, workers: int) -> None:
    """Decode every image into a temporary directory, fsync it, then rename it into place."""
    count = len(index)
    needed = count * image_size * image_size * 3
    free = shutil.disk_usage(entry.parent).free
    if needed > free:
        raise DataError(
            f"the image cache needs {needed / 1e6:,.1f} MB but {entry.parent} has "
            f"{free / 1e6:,.1f} MB free (set HAMTUNE_CACHE_DIR to a larger node-local disk "
            "or use a smaller image_size)"
        )
    logger.info(
        "building image cache %s: %d images at %d px with %d threads",
        entry, count, image_size, workers,
    )
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        npy = tmp / "images.npy"
        shape = (count, image_size, image_size, 3)
        images = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=shape)
        _decode_all(index.table["path"].tolist(), image_size, images, workers, started)
        images.flush()
        del images
        _fsync(npy)
        manifest = {
            **_expected_fields(index, image_size),
            "npy_bytes": npy.stat().st_size,
            "checksum": _checksum(npy),
            "resize": "whole image squashed to S×S, no crop; JPEG DCT draft; antialiased bilinear",
            "hamtune_version": __version__,
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        manifest["image_ids"] = manifest.pop("image_ids")  # the long list last, for readers
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / "manifest.json")
        _fsync(tmp)
        tmp.rename(entry)
        _fsync(entry.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built image cache %s in %.1f s", entry, manifest["build_seconds"])


def _decode_all(
    paths: list[str], image_size: int, out: np.ndarray, workers: int, started: float
) -> None:
    """Fill `out[i]` with `paths[i]` decoded, in a thread pool (Pillow releases the GIL)."""

    def decode_into(position: int) -> None:
        out[position] = decode_image(paths[position], image_size)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hamtune-decode")
    try:
        futures = [pool.submit(decode_into, position) for position in range(len(paths))]
        last_report = started
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()
            now = time.perf_counter()
            if now - last_report >= _PROGRESS_SECONDS:
                rate = done / (now - started)
                logger.info(
                    "image cache: %d/%d images (%.0f images/s, ETA %.0f s)",
                    done, len(paths), rate, (len(paths) - done) / rate,
                )
                last_report = now
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
