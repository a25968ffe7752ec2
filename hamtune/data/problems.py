"""Problems found in a dataset, collected rather than raised one at a time.

A broken dataset usually has many faults at once (a renamed folder loses thousands of images);
reporting them all in one pass, each with its file and line, saves the user a fix-rerun loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hamtune.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One fault in one file.

    `row` is the 1-based line number in the CSV file as a text editor shows it: the header is
    line 1, the first data row line 2 (quoted cells spanning several lines would shift it; the
    HAM10000 files have none). It is None for faults of a whole file (a missing file, an image).
    """

    file: str
    row: int | None
    message: str

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.row}: {self.message}"


def format_problems(problems: Sequence[Problem], limit: int | None = 20) -> list[str]:
    """One line per problem, at most `limit` of them (None: all) plus an "... and K more" line."""
    shown = problems if limit is None else problems[:limit]
    lines = [str(problem) for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"... and {len(problems) - len(shown)} more")
    return lines


def raise_if_problems(problems: Sequence[Problem], what: str, limit: int = 20) -> None:
    """Raise one `DataError` listing `problems` (the CLI prints its message as is); no-op if none."""
    if not problems:
        return
    noun = "problem" if len(problems) == 1 else "problems"
    header = f"{len(problems)} {noun} in {what}:"
    raise DataError("\n".join([header, *("  " + line for line in format_problems(problems, limit))]))
