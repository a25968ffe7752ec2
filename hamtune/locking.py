"""One process per node does a shared job (an image cache, a weights download); the others wait for it.

Each caller locks a file next to what it makes, says once that it waits when another process
holds the lock, and checks again what it finds once the lock is its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


@contextmanager
def node_lock(path: Path, logger: logging.Logger, doing: str) -> Iterator[None]:
    """Hold the file lock at `path`; if another process holds it, log that it is `doing` and wait."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for another process %s ...", doing)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
