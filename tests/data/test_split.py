"""Lesion-grouped stratified splits: full-scale balance, rare classes on the real sample, CSV round trip."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hamtune.data.split import SPLIT_COLUMNS, read_split, split_dataset, split_summary, write_split
from hamtune.data.synth import synthetic_metadata
from hamtune.errors import ConfigError, DataError
from hamtune.labels import CLASSES


def sample_labels(sample_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sample_dir / "HAM10000_metadata.csv")


def assert_lesion_disjoint(split: pd.DataFrame) -> None:
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()


@pytest.fixture(scope="module")
def synthetic_labels() -> pd.DataFrame:
    """1,000 synthetic rows: every class has >= 20 lesions, and splitting them is fast."""
    return synthetic_metadata(1000, seed=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_full_metadata_keeps_class_shares_and_split_sizes(full_metadata: Path, seed: int) -> None:
    labels = pd.read_csv(full_metadata)
    split = split_dataset(labels, val=0.15, test=0.15, seed=seed)

    assert tuple(split.columns) == SPLIT_COLUMNS
    assert len(split) == len(labels) == 10_015
    assert split["image_id"].is_monotonic_increasing
    assert set(split["image_id"]) == set(labels["image_id"])
    assert_lesion_disjoint(split)
    sizes = split["split"].value_counts(normalize=True)
    for name, asked in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs(sizes[name] - asked) < 0.02, (name, sizes[name])
    overall = split["dx"].value_counts(normalize=True)
    shares = pd.crosstab(split["dx"], split["split"], normalize="columns")
    assert (shares.sub(overall, axis=0).abs() < 0.02).all().all(), shares.sub(overall, axis=0)


def test_same_seed_same_split_other_seed_other_split(synthetic_labels: pd.DataFrame) -> None:
    first = split_dataset(synthetic_labels, seed=5)
    again = split_dataset(synthetic_labels.sample(frac=1, random_state=0), seed=5)  # row order is irrelevant
    other = split_dataset(synthetic_labels, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert (first["split"] != other["split"]).any()
    assert_lesion_disjoint(other)


def test_fractions_are_whole_five_percent_folds(synthetic_labels: pd.DataFrame) -> None:
    split = split_dataset(synthetic_labels, val=0.1, test=0.2, seed=0)
    sizes = split["split"].value_counts(normalize=True)
    assert abs(sizes["val"] - 0.10) < 0.02 and abs(sizes["test"] - 0.20) < 0.02
    assert set(split.groupby("dx")["split"].nunique()) == {3}  # >= 20 lesions per class: every split


def test_extra_columns_are_ignored(synthetic_labels: pd.DataFrame) -> None:
    split = split_dataset(synthetic_labels.assign(note="x"), seed=0)
    assert tuple(split.columns) == SPLIT_COLUMNS


def test_rare_classes_of_the_real_sample_raise_naming_each(sample_dir: Path) -> None:
    labels = sample_labels(sample_dir)
    with pytest.raises(DataError, match=r"akiec \(2 lesion\(s\), 2 image\(s\); none in") as info:
        split_dataset(labels, seed=0, rare="error")
    message = str(info.value)
    assert "rare='train'" in message
    kept_in_train = split_dataset(labels, seed=0, rare="train")
    train_only = sorted(set(kept_in_train["dx"]) - set(kept_in_train.loc[kept_in_train["split"] != "train", "dx"]))
    named = [dx for dx in CLASSES if f"{dx} (" in message]
    assert named == train_only  # the error names exactly the classes the fallback keeps in train


def test_rare_train_fallback_on_the_real_sample(sample_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = sample_labels(sample_dir)
    with caplog.at_level(logging.WARNING, logger="hamtune.data.split"):
        split = split_dataset(labels, seed=0, rare="train")

    assert len(split) == 124
    assert_lesion_disjoint(split)
    assert (split.loc[split["dx"] == "akiec", "split"] == "train").all()
    per_class = split.groupby("dx")["split"].agg(set)
    assert all(splits in ({"train"}, {"train", "val", "test"}) for splits in per_class)
    assert per_class["nv"] == {"train", "val", "test"}
    train_only = [dx for dx, splits in per_class.items() if splits == {"train"}]
    assert "kept in train only" in caplog.text
    assert all(f"{dx} (" in caplog.text for dx in train_only)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val": 0.0}, r"`val` must be in \(0, 1\), got 0.0"),
        ({"val": 1.5}, r"`val` must be in \(0, 1\), got 1.5"),
        ({"test": -0.1}, r"`test` must be in \(0, 1\), got -0.1"),
        ({"test": float("nan")}, r"`test` must be in \(0, 1\), got nan"),
        ({"val": "0.2"}, r"`val` must be in \(0, 1\), got '0.2'"),
        ({"val": 0.01}, r"`val`=0.01 rounds to 0 of 20 folds"),
        ({"val": 0.6, "test": 0.5}, r"`val \+ test` must leave data for train.*val=0.6, test=0.5"),
        ({"val": 0.5, "test": 0.48}, r"`val \+ test` must leave data for train"),
        ({"rare": "drop"}, r"`rare` must be one of \['error', 'train'\], got 'drop'"),
        ({"seed": -1}, r"`seed` must be an int in \[0, 2\*\*32 - 1\] \(numpy's seed range\), got -1"),
        ({"seed": 2**32}, r"`seed` must be an int in \[0, 2\*\*32 - 1\] .*, got 4294967296"),
    ],
)
def test_bad_arguments_are_config_errors(synthetic_labels: pd.DataFrame, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        split_dataset(synthetic_labels, **kwargs)


def test_lesion_with_two_diagnoses_is_named(synthetic_labels: pd.DataFrame) -> None:
    labels = synthetic_labels.copy()
    row = labels.index[labels["lesion_id"].duplicated()][0]  # the second view of a multi-view lesion
    lesion = labels.at[row, "lesion_id"]
    labels.at[row, "dx"] = "vasc" if labels.at[row, "dx"] != "vasc" else "nv"
    with pytest.raises(DataError, match=rf"lesion\(s\) with more than one dx .*{lesion} \("):
        split_dataset(labels)


def test_unknown_dx_and_missing_columns_are_data_errors(synthetic_labels: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"unknown dx value\(s\) \['melanoma'\]"):
        split_dataset(synthetic_labels.replace({"dx": {"mel": "melanoma"}}))
    with pytest.raises(DataError, match=r"lack column\(s\) \['lesion_id'\]"):
        split_dataset(synthetic_labels.drop(columns="lesion_id"))


def test_too_few_lesions_to_deal_into_folds(synthetic_labels: pd.DataFrame) -> None:
    few = synthetic_labels.drop_duplicates("lesion_id").head(19)
    with pytest.raises(DataError, match=r"cannot deal 19 images of 19 lesions into 20 folds"):
        split_dataset(few, rare="train")


def test_write_and_read_round_trip(tmp_path: Path, synthetic_labels: pd.DataFrame) -> None:
    split = split_dataset(synthetic_labels, seed=0)
    path = tmp_path / "runs" / "split.csv"
    write_split(split, path)
    pd.testing.assert_frame_equal(read_split(path), split)
    assert path.read_text().splitlines()[0] == "image_id,lesion_id,dx,split"
    assert [p.name for p in path.parent.iterdir()] == ["split.csv"]  # no temp file left


def test_failed_write_keeps_the_old_file(tmp_path: Path, synthetic_labels: pd.DataFrame) -> None:
    path = tmp_path / "split.csv"
    split = split_dataset(synthetic_labels, seed=0)
    write_split(split, path)
    before = path.read_bytes()
    with pytest.raises(KeyError):
        write_split(split.drop(columns="split"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["split.csv"]


def test_writing_the_split_onto_a_directory_or_under_a_file_is_refused(tmp_path: Path,
                                                                       synthetic_labels: pd.DataFrame) -> None:
    split = split_dataset(synthetic_labels, seed=0)
    with pytest.raises(ConfigError, match=rf"{tmp_path} is a directory: .* e\.g\. {tmp_path}/split\.csv"):
        write_split(split, tmp_path)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ConfigError, match=r"cannot write the split file .*file/split\.csv"):
        write_split(split, tmp_path / "file" / "split.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def write_rows(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


HEADER = "image_id,lesion_id,dx,split"


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (("ISIC_1,HAM_1,nv,train", "ISIC_2,HAM_2,nv,holdout"), r"line 3: split 'holdout' is not one of \['train', 'val', 'test'\]"),
        (("ISIC_1,HAM_1,naevus,train",), r"line 2: dx 'naevus' is not one of \['akiec'"),
        (("ISIC_1,HAM_1,nv,train", "ISIC_1,HAM_2,nv,val"), r"lists image_id 'ISIC_1' more than once"),
        (("ISIC_1,HAM_1,nv,train", "ISIC_2,HAM_1,nv,test"), r"puts lesion 'HAM_1' in more than one split"),
        (("ISIC_1,,nv,train",), r"line 2: empty lesion_id"),
    ],
)
def test_read_split_refuses_bad_values(tmp_path: Path, rows: tuple[str, ...], match: str) -> None:
    path = write_rows(tmp_path / "split.csv", HEADER, *rows)
    with pytest.raises(DataError, match=rf"split file .*split.csv.*{match}"):
        read_split(path)


def test_read_split_refuses_wrong_columns_and_missing_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "split.csv", "image_id,lesion_id,dx,fold", "ISIC_1,HAM_1,nv,1")
    with pytest.raises(DataError, match=r"has columns \['image_id', 'lesion_id', 'dx', 'fold'\]; expected"):
        read_split(path)
    with pytest.raises(DataError, match=r"cannot read split file .*absent.csv"):
        read_split(tmp_path / "absent.csv")


def test_split_summary_counts_and_shares() -> None:
    split = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e", "f"],
            "lesion_id": ["L1", "L1", "L2", "L3", "L4", "L5"],
            "dx": ["nv", "nv", "mel", "nv", "mel", "df"],
            "split": ["train", "train", "train", "train", "val", "test"],
        }
    )
    summary = split_summary(split)
    assert list(summary.index) == [*CLASSES, "all"]
    assert summary.loc["nv", "train_images"] == 3 and summary.loc["nv", "train_lesions"] == 2
    assert summary.loc["mel", "train_share"] == pytest.approx(0.25)
    assert summary.loc["mel", "val_share"] == pytest.approx(1.0)
    assert summary.loc["all", "train_images"] == 4 and summary.loc["all", "train_lesions"] == 3
    assert summary.loc["all", "train_share"] == pytest.approx(4 / 6)
    assert summary.loc["all", "test_share"] == pytest.approx(1 / 6)
    assert np.isclose(summary.loc[list(CLASSES), "train_share"].sum(), 1.0)
    assert summary.loc["akiec"].sum() == 0
