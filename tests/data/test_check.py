"""`check_dataset` decodes every image: the real sample passes, broken files are named."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from hamtune.data import check
from hamtune.data.check import check_dataset, format_report
from hamtune.data.layout import KAGGLE_METADATA
from hamtune.errors import ConfigError, DataError
from hamtune.labels import CLASSES
from tests.support.datasets import PART_1, SAMPLE_COUNTS, make_kaggle_copy


def test_sample_is_ok(sample_dir: Path) -> None:
    report = check_dataset(sample_dir, workers=2)
    assert report.ok and report.format == "kaggle"
    assert report.n_images == 124 and report.n_lesions == 123
    assert report.sizes == Counter({(600, 450): 124})
    assert list(report.classes.index) == list(CLASSES)
    assert report.classes["images"].to_dict() == SAMPLE_COUNTS
    assert report.classes.loc["df", "lesions"] == 3  # the sample's one two-view lesion is a df
    assert report.classes.loc["nv", "share_pct"] == pytest.approx(66.1)
    text = format_report(report)
    assert "images: 124, lesions: 123" in text and "image sizes: 600x450 (124)" in text
    assert text.endswith("OK: no problems found")


def test_broken_images_are_named(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir)
    truncated, png, text, missing = (root / PART_1 / f"ISIC_00243{n}.jpg" for n in ("06", "07", "08", "10"))
    data = truncated.read_bytes()
    for path in (truncated, png, text):
        path.unlink()
    truncated.write_bytes(data[: len(data) // 2])
    Image.new("RGB", (600, 450)).save(png, format="PNG")
    text.write_text("<html>404 Not Found</html>")
    missing.unlink()
    report = check_dataset(root, workers=2)
    assert not report.ok
    assert report.n_images == 120 and sum(report.classes["images"]) == 120
    assert report.sizes == Counter({(600, 450): 120})
    problems = [str(problem) for problem in report.problems]
    assert problems[0] == f"{root / KAGGLE_METADATA}:24: image ISIC_0024310 is listed but no ISIC_0024310.jpg " + (
        "was found under ham/"
    )
    assert problems[1].startswith(f"{truncated}: cannot decode image: image file is truncated")
    assert problems[2:] == [
        f"{png}: is a PNG image, not a JPEG",
        f"{text}: cannot decode image: cannot identify image file '{text}'",
    ]
    shown = format_report(report, limit=2)
    assert "4 problem(s):" in shown and shown.endswith("... and 2 more")
    assert f"{truncated}: cannot decode image" in shown


def test_progress_is_logged(
    sample_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="hamtune.data.check"):
        check_dataset(sample_dir, workers=1)
    assert "decoded 1/124 images (" in caplog.text and "decoded 124/124 images (" in caplog.text


def test_bad_arguments(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`workers` must be >= 1, got 0"):
        check_dataset(sample_dir, workers=0)
    with pytest.raises(DataError, match=r"data directory .*absent does not exist"):
        check_dataset(tmp_path / "absent")
