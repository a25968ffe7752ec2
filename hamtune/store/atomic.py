"""Local files replaced whole: written under a temporary name beside the target, then renamed over it.

A reader, or a crash, sees the old file or the whole new one, never half of it: the temporary
file lies in the target's directory (so on its filesystem, where `os.replace` is atomic) and is
synced before the rename. Its name is hidden (`.tmp-*`), and it is removed when writing fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any


class AtomicWrite:
    """`with AtomicWrite(path) as handle:` replaces `path` with what the block wrote, if it ends
    without an exception; otherwise `path` is left as it was.

    The temporary file is created here, not on entering the block, so a directory that cannot
    take it fails before anything is written, separately from a failure while writing. `mode`
    and `options` are `open`'s ("w" and `newline=""` for a CSV, say).
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "wb", **options: Any) -> None:
        self.path = Path(path)
        fd, self._temporary = tempfile.mkstemp(prefix=".tmp-", suffix=self.path.suffix, dir=self.path.parent)
        try:
            self._handle: IO[Any] = os.fdopen(fd, mode, **options)
        except BaseException:
            os.close(fd)
            Path(self._temporary).unlink(missing_ok=True)
            raise

    def __enter__(self) -> IO[Any]:
        return self._handle

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            with self._handle:
                if kind is None:
                    self._handle.flush()
                    os.fsync(self._handle.fileno())
            if kind is None:
                os.replace(self._temporary, self.path)
        finally:
            Path(self._temporary).unlink(missing_ok=True)
