"""`hamtune data check`: scan a dataset and decode every image, so a bad file fails here, not mid-sweep.

Reading labels and listing files (`scan_dataset`) cannot see a truncated download or an HTML error
page saved as .jpg; only decoding can, and a sweep that meets one hours in loses every trial.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from hamtune.data.layout import scan_dataset
from hamtune.data.problems import Problem, format_problems
from hamtune.errors import ConfigError
from hamtune.labels import CLASSES

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0


@dataclass
class CheckReport:
    """What `check_dataset` found. Counts cover the images that are listed, present and decodable.

    `classes` has one row per dx in `CLASSES` order with columns images, lesions and share_pct
    (share of images); `sizes` counts the (width, height) of the decoded images.
    """

    root: Path
    format: str
    problems: list[Problem]
    notes: list[str]
    n_images: int
    n_lesions: int
    classes: pd.DataFrame
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(data_dir: Path | str, format: str = "auto", workers: int | None = None) -> CheckReport:
    """Scan `data_dir` and decode every usable image with Pillow on `workers` threads.

    Threads suffice because Pillow releases the GIL while decoding; `workers` defaults to the
    number of CPUs.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"`workers` must be >= 1, got {workers}")
    scan = scan_dataset(data_dir, format)
    sizes, failures = _decode_all(list(scan.table["path"]), workers or os.cpu_count() or 1)
    decoded = scan.table.loc[~scan.table["path"].isin([problem.file for problem in failures])]
    return CheckReport(
        root=Path(data_dir),
        format=scan.format,
        problems=scan.problems + failures,
        notes=scan.notes,
        n_images=len(decoded),
        n_lesions=decoded["lesion_id"].nunique(),
        classes=class_table(decoded),
        sizes=sizes,
    )


def class_table(table: pd.DataFrame) -> pd.DataFrame:
    """Images and lesions per dx (every class in `CLASSES` order, zeros included) and image share."""
    grouped = table.groupby("dx")
    counts = pd.DataFrame({"images": grouped.size(), "lesions": grouped["lesion_id"].nunique()})
    counts = counts.reindex(pd.Index(CLASSES, name="dx"), fill_value=0).astype("int64")
    share = (100.0 * counts["images"] / max(len(table), 1)).round(1)
    return counts.assign(share_pct=share)


def format_report(report: CheckReport, limit: int | None = 20) -> str:
    """The report as text for a terminal: summary, classes, sizes, notes, then up to `limit` problems."""
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common()) or "none"
    lines = [
        f"dataset: {report.root} ({report.format} layout)",
        f"images: {report.n_images}, lesions: {report.n_lesions}",
        report.classes.to_string(),
        f"image sizes: {sizes}",
    ]
    lines += [f"note: {note}" for note in report.notes]
    if report.ok:
        lines.append("OK: no problems found")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines += format_problems(report.problems, limit)
    return "\n".join(lines)


def _decode(path: str) -> tuple[int, int] | str:
    """The image's (width, height), or why it cannot be used."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.format != "JPEG":
                return f"is a {image.format} image, not a JPEG"
            return image.size
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's decode errors; OSError covers truncation
        return f"cannot decode image: {error}"


def _decode_all(paths: list[str], workers: int) -> tuple[Counter[tuple[int, int]], list[Problem]]:
    """Decode `paths` on `workers` threads, logging progress every `PROGRESS_EVERY_S` seconds."""
    sizes: Counter[tuple[int, int]] = Counter()
    failures: list[Problem] = []
    start = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (path, result) in enumerate(zip(paths, pool.map(_decode, paths)), start=1):
            if isinstance(result, str):
                failures.append(Problem(path, None, result))
            else:
                sizes[result] += 1
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                logger.info("decoded %d/%d images (%.0f/s)", done, len(paths), done / (now - start))
    logger.info("decoded %d images in %.1f s, %d failed", len(paths), time.monotonic() - start, len(failures))
    return sizes, failures
