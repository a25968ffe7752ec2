"""Datasets named by a URI (s3://, gs://, file://), fetched once per node into the node-local cache.

On a cluster every worker node needs the images on its own disk, and an autoscaler adds nodes
nobody copies 3 GB to by hand. `fetch_dataset` copies the tree behind a URI into
`<cache_dir>/datasets/<name>-<hash of the URI>` with pyarrow's filesystems, the ones Ray uses
for storage, so credentials that let a node write checkpoints also let it read the data.

- Once per node: a file lock per dataset; concurrent trials wait for one fetch and reuse it.
- Verified on every call: each local file must have the size and modification time the remote
  listing gives (the remote mtime is copied onto the local file), so a truncated file or a
  changed remote is noticed. One listing costs about one request per 1,000 objects on S3.
- Resumable: a fetch fills a hidden `.partial` sibling that is renamed into place when complete;
  an interrupted fetch leaves it behind and the next call keeps the files that already match
  and downloads the rest. Each file is written under a `.part` name and renamed when whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs
from filelock import FileLock, Timeout

from hamtune.errors import DataError

logger = logging.getLogger(__name__)

#: The folder of the node cache that holds fetched datasets.
DATASETS_DIR = "datasets"
#: Written into a fetched copy last, before it is renamed into place: where it came from.
MANIFEST = ".hamtune-fetch.json"
_PART_SUFFIX = ".part"
_PROGRESS_SECONDS = 5.0

#: One remote file: (size in bytes, modification time in ns or None when the store has none).
Listing = dict[str, tuple[int, int | None]]


@dataclass(frozen=True)
class Fetched:
    """A local copy of a remote dataset and what this call had to download for it."""

    path: Path
    files: int
    bytes: int
    downloaded_files: int
    downloaded_bytes: int


def is_uri(location: str) -> bool:
    """Whether a `data.dir` value names a URI to fetch rather than a local directory."""
    return "://" in location


def fetch_dataset(uri: str, cache_dir: Path, threads: int = 8) -> Fetched:
    """The local copy of the directory tree at `uri` in `cache_dir`, fetched or updated if needed."""
    filesystem, root = _open(uri)
    listing = remote_listing(filesystem, root, uri)
    target = Path(cache_dir).expanduser() / DATASETS_DIR / local_name(uri)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create {target.parent} for the data of {uri}: {error} "
            "(set data.cache_dir or HAMTUNE_CACHE_DIR to a writable node-local directory)"
        ) from error
    if _is_complete(target, listing, uri):
        return _fetched(target, listing, 0, 0)

    lock = FileLock(str(target.with_name(f".{target.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for another process fetching %s into %s ...", uri, target)
        lock.acquire()
    try:
        if _is_complete(target, listing, uri):
            logger.info("reusing %s, fetched by another process", target)
            return _fetched(target, listing, 0, 0)
        partial = target.with_name(f".{target.name}.partial")
        if target.exists():
            logger.warning("%s no longer matches %s; updating it", target, uri)
            shutil.rmtree(partial, ignore_errors=True)
            target.rename(partial)
        elif partial.exists():
            logger.info("resuming the interrupted fetch of %s in %s", uri, partial)
        partial.mkdir(exist_ok=True)
        _remove_unlisted(partial, listing)
        stale = stale_files(partial, listing)
        count, size = _download(filesystem, root, uri, partial, {rel: listing[rel] for rel in stale}, threads)
        manifest = {
            "uri": uri, "files": len(listing), "bytes": sum(s for s, _ in listing.values()),
            "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        partial.rename(target)
        return _fetched(target, listing, count, size)
    finally:
        lock.release()


def local_name(uri: str) -> str:
    """`<last path part>-<12 hex of the URI's hash>`: readable, and distinct for distinct URIs."""
    stem = PurePosixPath(uri.split("://", 1)[1].rstrip("/")).name or "dataset"
    return f"{stem}-{hashlib.sha256(uri.rstrip('/').encode()).hexdigest()[:12]}"


def remote_listing(filesystem: pafs.FileSystem, root: str, uri: str) -> Listing:
    """Every file under `root`, by path relative to it (POSIX separators)."""
    try:
        kind = filesystem.get_file_info(root).type
        if kind != pafs.FileType.Directory:
            found = "nothing" if kind == pafs.FileType.NotFound else "a file"
            raise DataError(f"data.dir {uri!r} must be a directory of images, found {found} there")
        entries = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError as error:
        raise DataError(f"cannot list data.dir {uri!r}: {error}") from error
    prefix = root.rstrip("/") + "/"
    listing = {
        entry.path.removeprefix(prefix): (entry.size, entry.mtime_ns)
        for entry in entries if entry.type == pafs.FileType.File
    }
    if not listing:
        raise DataError(f"data.dir {uri!r} holds no files")
    return listing


def stale_files(local: Path, listing: Listing) -> list[str]:
    """Listed files whose local copy is missing or differs in size or modification time."""
    stale = []
    for rel, (size, mtime_ns) in listing.items():
        try:
            stat = os.stat(local / rel)
        except (FileNotFoundError, NotADirectoryError):
            stale.append(rel)
            continue
        if stat.st_size != size or (mtime_ns is not None and stat.st_mtime_ns != mtime_ns):
            stale.append(rel)
    return stale


def _open(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"data.dir {uri!r} cannot be opened: {error}") from error
    return filesystem, root.rstrip("/")


def _local_files(local: Path) -> set[str]:
    return {
        (Path(folder) / name).relative_to(local).as_posix()
        for folder, _, names in os.walk(local) for name in names
    }


def _is_complete(target: Path, listing: Listing, uri: str) -> bool:
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("uri") != uri:
        return False
    return not stale_files(target, listing) and _local_files(target) == set(listing) | {MANIFEST}


def _remove_unlisted(local: Path, listing: Listing) -> None:
    """Files the remote no longer has, `.part` leftovers and an old manifest."""
    for rel in _local_files(local) - set(listing):
        (local / rel).unlink()


def _download(
    filesystem: pafs.FileSystem, root: str, uri: str, local: Path, todo: Listing, threads: int
) -> tuple[int, int]:
    """Copy `todo` from `root` into `local` on `threads` threads; returns (files, bytes) copied."""
    if not todo:
        return 0, 0
    total = sum(size for size, _ in todo.values())
    logger.info("fetching %d files (%.1f MB) of %s into %s", len(todo), total / 1e6, uri, local)
    started = last_report = time.perf_counter()
    done_bytes = 0
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hamtune-fetch")
    try:
        futures = {
            pool.submit(_copy_file, filesystem, f"{root}/{rel}", local / rel, size, mtime_ns, uri, rel): rel
            for rel, (size, mtime_ns) in todo.items()
        }
        for done, future in enumerate(as_completed(futures), start=1):
            done_bytes += future.result()
            logger.debug("fetched %s", futures[future])
            now = time.perf_counter()
            if now - last_report >= _PROGRESS_SECONDS:
                rate = done_bytes / (now - started)
                logger.info(
                    "fetching %s: %d/%d files, %.1f/%.1f MB (%.1f MB/s)",
                    uri, done, len(todo), done_bytes / 1e6, total / 1e6, rate / 1e6,
                )
                last_report = now
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    logger.info("fetched %s in %.1f s", uri, time.perf_counter() - started)
    return len(todo), done_bytes


def _copy_file(
    filesystem: pafs.FileSystem, source: str, dest: Path, size: int, mtime_ns: int | None, uri: str, rel: str
) -> int:
    """One file, written under a `.part` name and renamed only when whole and as listed."""
    part = dest.with_name(dest.name + _PART_SUFFIX)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(source, str(part), source_filesystem=filesystem,
                        destination_filesystem=pafs.LocalFileSystem(), use_threads=False)
    except OSError as error:
        raise DataError(f"cannot fetch {uri}/{rel}: {error}") from error
    copied = part.stat().st_size
    if copied != size:
        raise DataError(
            f"{uri}/{rel} changed while it was fetched ({copied} bytes read, {size} listed); "
            "run again once the dataset is no longer being written"
        )
    if mtime_ns is not None:
        os.utime(part, ns=(mtime_ns, mtime_ns))
    os.replace(part, dest)
    return copied


def _fetched(target: Path, listing: Listing, files: int, size: int) -> Fetched:
    return Fetched(
        path=target, files=len(listing), bytes=sum(s for s, _ in listing.values()),
        downloaded_files=files, downloaded_bytes=size,
    )
