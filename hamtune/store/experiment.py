"""The experiment directory: where a sweep keeps its split, config, checkpoints and tables.

A directory is a hamtune experiment when it holds `hamtune.json`; only such directories are
ever resumed (resuming unpickles Ray's experiment state, so a foreign directory is refused).
Works the same for local paths and object-store URIs through pyarrow's filesystems.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from hamtune.errors import ExperimentError

MARKER = "hamtune.json"
SPLIT_FILE = "split.csv"
SWEEP_FILE = "sweep.yaml"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ExperimentDir:
    """An experiment location: `storage/name`, as a local absolute path or a URI."""

    storage: str
    name: str

    @property
    def uri(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def is_remote(self) -> bool:
        return "://" in self.storage and not self.storage.startswith("file://")

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        try:
            return pafs.FileSystem.from_uri(self.uri) if "://" in self.uri else (
                pafs.LocalFileSystem(), self.uri)
        except Exception as error:  # pyarrow raises several types for bad or unreachable URIs
            raise ExperimentError(f"storage {self.storage!r} cannot be opened: {error}") from error

    def exists(self) -> bool:
        fs, path = self._fs()
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def is_hamtune(self) -> bool:
        fs, path = self._fs()
        return fs.get_file_info(f"{path}/{MARKER}").type == pafs.FileType.File

    def write_text(self, name: str, text: str) -> None:
        fs, path = self._fs()
        try:
            fs.create_dir(path, recursive=True)
            with fs.open_output_stream(f"{path}/{name}") as handle:
                handle.write(text.encode())
        except OSError as error:
            raise ExperimentError(f"could not write {self.uri}/{name}: {error}") from error

    def read_text(self, name: str) -> str:
        fs, path = self._fs()
        try:
            with fs.open_input_stream(f"{path}/{name}") as handle:
                return handle.read().decode()
        except (OSError, FileNotFoundError) as error:
            raise ExperimentError(f"{self.uri}/{name} cannot be read: {error}") from error

    def create(self, sweep_text: str, config: dict[str, Any], split: pd.DataFrame, info: dict[str, Any]) -> None:
        """Record what the sweep needs to be resumed and analysed; the marker is written last."""
        self.write_text(SWEEP_FILE, sweep_text)
        self.write_text(CONFIG_FILE, json.dumps(config, indent=2, default=str))
        buffer = io.StringIO()
        split.to_csv(buffer, index=False)
        self.write_text(SPLIT_FILE, buffer.getvalue())
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.write_text(MARKER, json.dumps({**info, "name": self.name, "created": created}, indent=2))

    def info(self) -> dict[str, Any]:
        return json.loads(self.read_text(MARKER))

    def split(self) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(self.read_text(SPLIT_FILE)), dtype=str)


def experiment_for(storage: str, name: str) -> ExperimentDir:
    """Resolve a storage setting (path, `~` path or URI) and a sweep name to an `ExperimentDir`."""
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    elif storage.startswith("file://"):
        storage = str(Path(storage.removeprefix("file://")).resolve())
    return ExperimentDir(storage=storage, name=name)


def experiment_at(location: str) -> ExperimentDir:
    """The experiment directory a user names: a path (`~` allowed), a file:// URI or another URI."""
    if "://" in location and not location.startswith("file://"):
        storage, _, name = location.rstrip("/").rpartition("/")
    else:
        path = Path(location.removeprefix("file://")).expanduser().resolve()
        storage, name = str(path.parent), path.name
    return experiment_for(storage, name)
