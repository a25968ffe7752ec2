"""The synthetic HAM10000: Kaggle layout, realistic metadata, determinism, refusals, generate-once cache."""

from __future__ import annotations

import logging
import multiprocessing
import re
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hamtune.data.split import split_dataset
from hamtune.data.synth import (
    DX_TYPES,
    LOCALIZATIONS,
    METADATA_COLUMNS,
    MIN_IMAGES,
    MIN_LESIONS_PER_CLASS,
    PARTS,
    SEXES,
    VIEWS_PER_LESION,
    ensure_synthetic,
    synthetic_metadata,
    write_synthetic,
)
from hamtune.errors import ConfigError
from hamtune.labels import CLASSES

SMALL = (64, 48)
REAL_IMAGES = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synth") / "ham", images=300, seed=0, size=SMALL)


def read_metadata(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "HAM10000_metadata.csv")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_kaggle_layout(dataset: Path) -> None:
    metadata = read_metadata(dataset)
    assert tuple(metadata.columns) == METADATA_COLUMNS
    assert sorted(p.name for p in dataset.iterdir()) == sorted([*PARTS, "HAM10000_metadata.csv"])
    jpgs = {p.stem: p for p in dataset.glob("*/*.jpg")}
    assert len(metadata) == len(jpgs) == 300
    assert set(jpgs) == set(metadata["image_id"])
    numbers = metadata["image_id"].str.removeprefix("ISIC_").astype(int).sort_values()
    assert numbers.tolist() == list(range(24306, 24306 + 300))  # consecutive ids from ISIC_0024306, like the real set
    in_part_1 = sorted(int(stem.removeprefix("ISIC_")) for stem, p in jpgs.items() if p.parent.name == PARTS[0])
    assert in_part_1 == list(range(24306, 24306 + 150))  # the first half of the ids, like the real part_1
    with Image.open(next(iter(jpgs.values()))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", SMALL)


def test_metadata_values_follow_the_real_value_sets(dataset: Path) -> None:
    metadata = read_metadata(dataset)
    assert metadata["image_id"].str.fullmatch(r"ISIC_00\d{5}").all()
    assert metadata["lesion_id"].str.fullmatch(r"HAM_00\d{5}").all()
    assert metadata["image_id"].is_unique
    assert set(metadata["dx"]) == set(CLASSES)
    assert set(metadata["dx_type"]) <= set(DX_TYPES)
    assert set(metadata["sex"]) <= set(SEXES)
    assert set(metadata["localization"]) <= set(LOCALIZATIONS)
    ages = metadata["age"].dropna()
    assert ((ages % 5 == 0) & ages.between(0, 85)).all()
    assert (metadata["age"].isna() == (metadata["sex"] == "unknown")).all()
    assert (metadata.loc[metadata["dx_type"] == "follow_up", "dx"] == "nv").all()  # leaks the label, as in the real set
    per_lesion = metadata.groupby("lesion_id")[["dx", "dx_type", "sex", "localization"]].nunique()
    assert (per_lesion == 1).all().all()  # one patient, one lesion: the same metadata on every view


def test_class_mix_and_views_per_lesion_are_realistic() -> None:
    metadata = synthetic_metadata(10_015, seed=0)  # metadata only: fast
    counts = metadata["dx"].value_counts()
    for dx, real in REAL_IMAGES.items():
        assert counts[dx] == pytest.approx(real, rel=0.01)
    lesions = metadata.groupby("lesion_id").agg(dx=("dx", "first"), views=("image_id", "size"))
    assert len(lesions) == pytest.approx(7470, rel=0.03)
    assert lesions["views"].max() >= 4
    in_multi = metadata["lesion_id"].map(lesions["views"]) > 1
    multi_share = in_multi.groupby(metadata["dx"]).mean()
    assert multi_share["mel"] == pytest.approx(0.79, abs=0.05)  # real: 79 % of melanoma images, 34 % of nevi
    assert multi_share["nv"] == pytest.approx(0.34, abs=0.05)


def test_small_sets_give_every_class_enough_lesions_for_a_three_way_split() -> None:
    for images, seed in ((MIN_IMAGES, 0), (MIN_IMAGES, 1), (1000, 2)):
        metadata = synthetic_metadata(images, seed)
        assert len(metadata) == images
        assert metadata.groupby("dx")["lesion_id"].nunique().min() >= MIN_LESIONS_PER_CLASS
        split = split_dataset(metadata, seed=seed)  # rare="error": must not raise
        assert (split.groupby("dx")["split"].nunique() == 3).all()
    assert synthetic_metadata(1000, 0)["dx"].value_counts().idxmax() == "nv"


def test_same_arguments_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "a", images=MIN_IMAGES, seed=7, size=SMALL)
    again = write_synthetic(tmp_path / "b", images=MIN_IMAGES, seed=7, size=SMALL)
    other = write_synthetic(tmp_path / "c", images=MIN_IMAGES, seed=8, size=SMALL)
    assert files(first) == files(again)
    assert read_metadata(first).to_csv() != read_metadata(other).to_csv()
    one = np.asarray(Image.open(next(first.glob("*/*.jpg"))))
    assert not any(np.array_equal(one, np.asarray(Image.open(p))) for p in other.glob("*/*.jpg"))
    assert not list(tmp_path.glob(".*partial*"))


def test_views_of_a_lesion_look_alike(dataset: Path) -> None:
    """Two views of one lesion are closer in mean colour than two different lesions usually are."""
    metadata = read_metadata(dataset)
    jpgs = {p.stem: p for p in dataset.glob("*/*.jpg")}

    def distance(a: str, b: str) -> float:
        colours = [np.asarray(Image.open(jpgs[i]).resize((8, 8)), dtype=float).mean(axis=(0, 1)) for i in (a, b)]
        return float(np.abs(colours[0] - colours[1]).sum())

    views = metadata[metadata["lesion_id"].duplicated(keep=False)].groupby("lesion_id")["image_id"].agg(list)
    firsts = metadata.drop_duplicates("lesion_id")["image_id"].tolist()
    same = np.median([distance(ids[0], ids[1]) for ids in views])
    different = np.median([distance(a, b) for a, b in zip(firsts[::2], firsts[1::2])])
    assert same < 0.75 * different


def test_default_size_is_600_by_450(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "full", images=MIN_IMAGES)
    with Image.open(next(root.glob(f"{PARTS[0]}/*.jpg"))) as image:
        assert image.size == (600, 450)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": MIN_IMAGES - 1}, rf"`images` must be an integer >= {MIN_IMAGES} \(20 lesions for each of 7 classes\), got 139"),
        ({"images": 500.0}, r"`images` must be an integer >= 140.*got 500.0"),
        ({"seed": -1}, r"`seed` must be an integer >= 0, got -1"),
        ({"size": (31, 100)}, r"`size` must be \(width, height\), integers >= 32, got \(31, 100\)"),
        ({"size": (64,)}, r"`size` must be \(width, height\)"),
        ({"size": (64.0, 48)}, r"`size` must be \(width, height\)"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        write_synthetic(tmp_path / "out", **{"images": MIN_IMAGES, "size": SMALL, **kwargs})
    assert not (tmp_path / "out").exists()


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"out already exists and is not an empty folder"):
        write_synthetic(tmp_path / "out", images=MIN_IMAGES, size=SMALL)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


def test_ensure_generates_once_then_reuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    leftover = tmp_path / f".synthetic-{MIN_IMAGES}-0-64x48.partial-123-dead"
    leftover.mkdir()  # what an interrupted generation leaves behind
    with caplog.at_level(logging.INFO, logger="hamtune.data.synth"):
        first = ensure_synthetic(tmp_path, MIN_IMAGES, 0, SMALL)
        stamp = (first / "HAM10000_metadata.csv").stat().st_mtime_ns
        second = ensure_synthetic(tmp_path, MIN_IMAGES, 0, SMALL)
    assert first == second == tmp_path / "synthetic-140-0-64x48"
    assert (second / "HAM10000_metadata.csv").stat().st_mtime_ns == stamp
    assert caplog.text.count("generating synthetic dataset") == 1
    assert "reusing synthetic dataset" in caplog.text
    assert re.search(r"synthetic images: 140/140", caplog.text)
    assert not leftover.exists()


def ensure_in_child(root: Path, log_file: Path, barrier: Barrier) -> None:
    """Run in a spawned process: log to a file, wait for the sibling, then ask for the dataset."""
    logging.basicConfig(filename=log_file, level=logging.INFO)
    barrier.wait()
    ensure_synthetic(root, MIN_IMAGES, 1, SMALL)


def test_ensure_from_two_processes_at_once_generates_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = [context.Process(target=ensure_in_child, args=(tmp_path / "cache", log, barrier)) for log in logs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    text = "".join(log.read_text() for log in logs)
    assert text.count("generating synthetic dataset") == 1
    assert text.count("reusing synthetic dataset") == 1
    assert len(read_metadata(tmp_path / "cache" / "synthetic-140-1-64x48")) == MIN_IMAGES


def test_embedded_tables_are_consistent() -> None:
    assert set(VIEWS_PER_LESION) == set(CLASSES)
    images = {dx: int(np.dot(views, np.arange(1, 7))) for dx, views in VIEWS_PER_LESION.items()}
    assert images == REAL_IMAGES
    assert sum(map(sum, VIEWS_PER_LESION.values())) == 7470
