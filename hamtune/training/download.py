"""One file from a URL, fetched once per node and verified against its known hash.

On a fresh GPU node every trial asks for the same ImageNet weights at the same moment. Without
coordination each one downloads the same ~200 MB, and a file cut short by a killed trial or a
dropped connection sits in the cache under its final name, where the next trial would load it.

- Once per node: a file lock next to the file; concurrent callers wait for one download and
  reuse it.
- Verified on every call: the file must have its known digest (Keras's applications publish
  one per weights file), so a truncated or corrupt copy is noticed and fetched again.
- Atomic: a download fills a hidden `.part` sibling in the same directory that is renamed into
  place (`os.replace`) only once its digest matches, so the final name never holds a partial
  or wrong file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from hamtune.locking import node_lock

log = logging.getLogger(__name__)

_TIMEOUT_S = 60.0
"""Seconds a connection may stay silent before the download fails."""
_CHUNK = 1 << 20


class DownloadError(Exception):
    """The file could not be fetched or is not the one its digest names (a one-line message)."""


def fetch_verified(url: str, target: Path, file_hash: str) -> Path:
    """`target`, downloaded from `url` unless a copy matching `file_hash` is already there.

    `file_hash` is "<algorithm>:<hex digest>" ("md5:...", "sha256:..."). A copy that does not
    match is reported in one warning and fetched again. Raises DownloadError when the server
    cannot be reached or sends other bytes; `target` is then absent.
    """
    algorithm, _, expected = file_hash.partition(":")
    if _digest(target, algorithm) == expected:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {target.parent}: {exc}") from exc
    with node_lock(target.with_name(f".{target.name}.lock"), log, f"downloading {target}"):
        found = _digest(target, algorithm)
        if found == expected:
            log.info("reusing %s, downloaded by another process", target)
            return target
        if found is not None:
            log.warning(
                "%s does not have its known %s (truncated or corrupt?); downloading it again",
                target, algorithm,
            )
            target.unlink()
        part = target.with_name(f".{target.name}.part")
        try:
            _download(url, part)
            actual = _digest(part, algorithm)
            if actual != expected:
                raise DownloadError(
                    f"{url} sent {part.stat().st_size} bytes whose {algorithm} is {actual}, "
                    f"not the expected {expected}"
                )
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return target


def _download(url: str, dest: Path) -> None:
    log.info("downloading %s into %s", url, dest.parent)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:  # its reason alone would drop the status code
        raise DownloadError(f"cannot download {url}: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError and socket timeouts are OSErrors
        reason = _one_line(getattr(exc, "reason", exc))
        raise DownloadError(f"cannot download {url}: {reason}") from exc
    log.info("downloaded %s (%.1f MB) in %.1f s", url, dest.stat().st_size / 1e6,
             time.perf_counter() - started)


def _digest(path: Path, algorithm: str) -> str | None:
    """The file's hex digest, or None when there is no file."""
    # The digest names a file, it protects no secret: FIPS nodes allow md5 for that.
    hasher = hashlib.new(algorithm, usedforsecurity=False)
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
    except FileNotFoundError:
        return None
    return hasher.hexdigest()


def _one_line(reason: object) -> str:
    """An exception's reason on one line, or its type's name when it has no text."""
    return " ".join(str(reason).split()) or type(reason).__name__
