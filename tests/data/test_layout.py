"""Reading both on-disk layouts, on the real sample and on broken copies of it built in tmp_path."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from hamtune.data.layout import (
    ISIC_GROUND_TRUTH,
    ISIC_GROUPINGS,
    ISIC_IMAGES,
    KAGGLE_METADATA,
    detect_format,
    load_dataset,
    read_labels,
    scan_dataset,
)
from hamtune.data.problems import Problem, raise_if_problems
from hamtune.errors import DataError
from tests.support.datasets import PART_1, SAMPLE_COUNTS, make_kaggle_copy
from tests.support.datasets import sample_metadata



def messages(problems: list[Problem]) -> str:
    return "\n".join(map(str, problems))


# ---- the real sample --------------------------------------------------------------------------


def test_sample_loads_clean(sample_dir: Path) -> None:
    assert detect_format(sample_dir) == "kaggle"
    scan = scan_dataset(sample_dir)
    assert scan.problems == [] and scan.notes == []
    index = load_dataset(sample_dir)
    assert len(index) == 124 and index.format == "kaggle"
    assert index.table["dx"].value_counts().to_dict() == SAMPLE_COUNTS
    assert index.table["image_id"].is_monotonic_increasing
    assert index.table["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert (index.table["size_bytes"] > 10_000).all()


def test_only_ids_and_labels_reach_the_index(sample_dir: Path) -> None:
    """dx_type leaks the label: no metadata column beyond the ids and dx may survive reading."""
    table = load_dataset(sample_dir).table
    assert list(table.columns) == ["image_id", "lesion_id", "dx", "label", "path", "size_bytes"]
    assert list(read_labels(sample_dir).columns) == ["image_id", "lesion_id", "dx"]


def test_read_labels_from_dir_and_file_agree(sample_dir: Path) -> None:
    from_dir = read_labels(sample_dir)
    from_file = read_labels(sample_dir / KAGGLE_METADATA)
    pd.testing.assert_frame_equal(from_dir, from_file)
    assert len(from_dir) == 124 and from_dir["image_id"].is_monotonic_increasing


# ---- full metadata with only the sample's images ------------------------------------------------


@pytest.fixture
def full_dir(tmp_path: Path, sample_dir: Path, full_metadata: Path) -> Path:
    root = tmp_path / "full"
    (root / PART_1).mkdir(parents=True)
    shutil.copy(full_metadata, root / KAGGLE_METADATA)
    for image in (sample_dir / PART_1).iterdir():
        (root / PART_1 / image.name).symlink_to(image)
    return root


def test_full_metadata_reports_every_missing_image(full_dir: Path) -> None:
    scan = scan_dataset(full_dir)
    assert len(scan.problems) == 9_891
    assert all("is listed but no" in p.message and p.file.endswith(KAGGLE_METADATA) for p in scan.problems)
    assert len(scan.table) == 124
    rows = {p.row for p in scan.problems}
    assert min(rows) >= 2 and max(rows) == 10_016  # CSV lines: header is line 1
    with pytest.raises(DataError, match=r"(?s)^9891 problems in dataset .*:\n  .*\n  \.\.\. and 9871 more$"):
        load_dataset(full_dir)


def test_read_labels_full_metadata(full_metadata: Path) -> None:
    labels = read_labels(full_metadata)
    assert len(labels) == 10_015 and labels["lesion_id"].nunique() == 7_470
    assert labels["dx"].value_counts()["nv"] == 6_705


# ---- broken metadata --------------------------------------------------------------------------


def _set(row: int, column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set(4, "dx", "melanoma"),
            r"HAM10000_metadata.csv:6: unknown dx 'melanoma'; allowed: akiec, bcc, bkl, df, mel, nv, vasc",
        ),
        (_set(4, "dx", ""), r"HAM10000_metadata.csv:6: missing dx; allowed: akiec"),
        (_set(7, "image_id", ""), r"HAM10000_metadata.csv:9: empty image_id"),
        (_set(2, "lesion_id", " "), r"HAM10000_metadata.csv:4: missing lesion_id for image ISIC_\d+"),
    ],
    ids=["unknown-dx", "missing-dx", "empty-image-id", "missing-lesion-id"],
)
def test_bad_metadata_rows(tmp_path: Path, sample_dir: Path, edit: Callable, expected: str) -> None:
    scan = scan_dataset(make_kaggle_copy(tmp_path, sample_dir, edit))
    assert any(pd.Series([str(p) for p in scan.problems]).str.contains(expected))
    assert len(scan.table) == 123


def test_duplicate_image_id_names_both_rows(tmp_path: Path, sample_dir: Path) -> None:
    metadata = sample_metadata(sample_dir)
    lost, kept = metadata.loc[10, "image_id"], metadata.loc[3, "image_id"]
    scan = scan_dataset(make_kaggle_copy(tmp_path, sample_dir, _set(10, "image_id", kept)))
    text = messages(scan.problems)
    assert f"HAM10000_metadata.csv:12: duplicate image_id {kept} (first on line 5)" in text
    assert f"{PART_1}/{lost}.jpg: image file is not listed in HAM10000_metadata.csv" in text
    assert len(scan.problems) == 2 and kept not in set(scan.table["image_id"])


def test_conflicting_lesion_dx(tmp_path: Path, sample_dir: Path) -> None:
    metadata = sample_metadata(sample_dir)
    first_nv = int(metadata.index[metadata["dx"].eq("nv")][0])
    first_bkl = int(metadata.index[metadata["dx"].eq("bkl")][0])
    lesion = metadata.loc[first_bkl, "lesion_id"]
    scan = scan_dataset(make_kaggle_copy(tmp_path, sample_dir, _set(first_nv, "lesion_id", lesion)))
    lines = sorted([first_nv + 2, first_bkl + 2])
    assert messages(scan.problems) == (
        f"{scan.problems[0].file}:{lines[0]}: lesion_id {lesion} has conflicting dx: "
        f"bkl on line(s) {first_bkl + 2}; nv on line(s) {first_nv + 2}"
    )
    assert lesion not in set(scan.table["lesion_id"])


def test_missing_columns_are_named(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir, lambda frame: frame.drop(columns=["dx", "lesion_id"]))
    scan = scan_dataset(root)
    assert messages(scan.problems) == (
        f"{root / KAGGLE_METADATA}:1: missing required column(s) lesion_id, dx; "
        "found: image_id, dx_type, age, sex, localization"
    )
    assert scan.table.empty
    with pytest.raises(DataError, match=r"^1 problem in dataset .*\n  .*HAM10000_metadata.csv:1: missing"):
        load_dataset(root)


def test_header_only_csv(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir, lambda frame: frame.iloc[:0])
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: no data rows \(only a header\)"):
        load_dataset(root)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: no data rows"):
        read_labels(root / KAGGLE_METADATA)


def test_unparseable_csv(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir)
    with (root / KAGGLE_METADATA).open("a") as csv:
        csv.write("HAM_1,ISIC_1,nv,histo,5.0,male,back,extra,cells\n")
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: cannot read as CSV: .*line 126"):
        load_dataset(root)


def test_blank_lines_keep_line_numbers_and_na_ids_survive(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir, _set(0, "lesion_id", "NA"))
    lines = (root / KAGGLE_METADATA).read_text().splitlines()
    cells = lines[5].split(",")
    lines[5] = ",".join([*cells[:2], "nevus", *cells[3:]])
    (root / KAGGLE_METADATA).write_text("\n".join([*lines[:3], "", *lines[3:]]) + "\n")
    scan = scan_dataset(root)
    assert [(p.row, p.message.split(";")[0]) for p in scan.problems] == [(7, "unknown dx 'nevus'")]
    assert "NA" in set(scan.table["lesion_id"])


# ---- images -----------------------------------------------------------------------------------


def test_listed_but_missing_and_stray(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir)
    metadata = sample_metadata(sample_dir)
    missing = metadata.loc[20, "image_id"]
    (root / PART_1 / f"{missing}.jpg").unlink()
    (root / "extra").mkdir()
    (root / "extra" / "ISIC_9999999.JPEG").symlink_to(sample_dir / PART_1 / "ISIC_0024306.jpg")
    (root / "extra" / "notes.txt").write_text("not an image")
    (root / "extra" / ".hidden.jpg").write_text("a resource fork")
    scan = scan_dataset(root)
    assert messages(scan.problems) == (
        f"{root / KAGGLE_METADATA}:22: image {missing} is listed but no {missing}.jpg was found "
        f"under {root.name}/\n"
        f"{root / 'extra' / 'ISIC_9999999.JPEG'}: image file is not listed in HAM10000_metadata.csv"
    )
    assert len(scan.table) == 123


def test_identical_copies_in_lower_case_folder_are_folded(tmp_path: Path, sample_dir: Path) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir)
    (root / PART_1.lower()).mkdir()
    for image in (sample_dir / PART_1).iterdir():
        shutil.copy(image, root / PART_1.lower() / image.name)
    scan = scan_dataset(root)
    assert scan.problems == []
    assert len(scan.notes) == 1 and scan.notes[0].startswith("124 image ids have identical copies")
    assert "124 copies ignored" in scan.notes[0]
    assert scan.table["path"].str.contains(f"/{PART_1}/").all()


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "different-size"])
def test_differing_copies_are_a_problem(tmp_path: Path, sample_dir: Path, same_size: bool) -> None:
    root = make_kaggle_copy(tmp_path, sample_dir)
    data = bytearray((sample_dir / PART_1 / "ISIC_0024306.jpg").read_bytes())
    if same_size:
        data[len(data) // 2] ^= 0xFF
    else:
        data += b"\0"
    (root / "copy").mkdir()
    (root / "copy" / "ISIC_0024306.jpeg").write_bytes(bytes(data))
    scan = scan_dataset(root)
    assert messages(scan.problems) == (
        f"{root / PART_1 / 'ISIC_0024306.jpg'}: differs from {root / 'copy' / 'ISIC_0024306.jpeg'} "
        "or cannot be read (same image_id ISIC_0024306): keep one"
    )
    assert "ISIC_0024306" not in set(scan.table["image_id"]) and len(scan.table) == 123


# ---- layouts and arguments --------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data directory .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"data directory .*nowhere does not exist"):
        scan_dataset(tmp_path / "nowhere", format="kaggle")
    with pytest.raises(DataError, match=r"nowhere does not exist: expected a label CSV or a data directory"):
        read_labels(tmp_path / "nowhere")


def test_unknown_format_value(sample_dir: Path) -> None:
    with pytest.raises(DataError, match=r"format must be one of 'auto', 'kaggle', 'isic2018', got 'csv'"):
        scan_dataset(sample_dir, format="csv")
    with pytest.raises(DataError, match=r"got 'csv'"):
        read_labels(sample_dir / KAGGLE_METADATA, format="csv")


def test_undetectable_layout(tmp_path: Path) -> None:
    expected = rf"layout of {tmp_path}: found neither {KAGGLE_METADATA} \(kaggle\) nor {ISIC_GROUND_TRUTH}"
    with pytest.raises(DataError, match=expected):
        load_dataset(tmp_path)
    (tmp_path / KAGGLE_METADATA).write_text("")
    (tmp_path / ISIC_GROUND_TRUTH).write_text("")
    with pytest.raises(DataError, match=r"holds both .*: pass format 'kaggle' or 'isic2018'"):
        detect_format(tmp_path)


def test_explicit_format_without_its_label_file(sample_dir: Path) -> None:
    scan = scan_dataset(sample_dir, format="isic2018")
    assert messages(scan.problems) == (
        f"{sample_dir / ISIC_GROUND_TRUTH}: file not found\n{sample_dir / ISIC_GROUPINGS}: file not found"
    )


def test_raise_if_problems_limits_lines() -> None:
    raise_if_problems([], "nothing")
    problems = [Problem("a.csv", line, "bad") for line in range(2, 7)]
    expected = r"^5 problems in x.csv:\n  a.csv:2: bad\n  a.csv:3: bad\n  \.\.\. and 3 more$"
    with pytest.raises(DataError, match=expected):
        raise_if_problems(problems, "x.csv", limit=2)
    assert str(Problem("img.jpg", None, "broken")) == "img.jpg: broken"


# ---- ISIC 2018 Task 3 layout ------------------------------------------------------------------


def make_isic_copy(tmp_path: Path, sample_dir: Path) -> Path:
    """The sample in the ISIC 2018 layout, with the class columns in a shuffled order."""
    root = tmp_path / "isic"
    (root / ISIC_IMAGES).mkdir(parents=True)
    for image in (sample_dir / PART_1).iterdir():
        (root / ISIC_IMAGES / image.name).symlink_to(image)
    (root / ISIC_IMAGES / "ATTRIBUTION.txt").write_text("HAM10000, CC BY-NC 4.0")
    metadata = sample_metadata(sample_dir)
    columns = ["VASC", "NV", "AKIEC", "MEL", "DF", "BKL", "BCC"]
    cells = {True: "1.0", False: "0.0"}
    one_hot = pd.DataFrame({name: metadata["dx"].eq(name.lower()).map(cells) for name in columns})
    one_hot.insert(0, "image", metadata["image_id"])
    one_hot.to_csv(root / ISIC_GROUND_TRUTH, index=False)
    groups = metadata.rename(columns={"image_id": "image", "dx_type": "diagnosis_confirm_type"})
    groups[["image", "lesion_id", "diagnosis_confirm_type"]].to_csv(root / ISIC_GROUPINGS, index=False)
    return root


def test_isic_layout_matches_kaggle(tmp_path: Path, sample_dir: Path) -> None:
    root = make_isic_copy(tmp_path, sample_dir)
    assert detect_format(root) == "isic2018"
    index = load_dataset(root)
    assert index.format == "isic2018"
    kaggle = load_dataset(sample_dir)
    columns = ["image_id", "lesion_id", "dx", "label", "size_bytes"]
    pd.testing.assert_frame_equal(index.table[columns], kaggle.table[columns])
    assert index.fingerprint == kaggle.fingerprint
    pd.testing.assert_frame_equal(read_labels(root / ISIC_GROUND_TRUTH), read_labels(sample_dir))


def test_isic_problems(tmp_path: Path, sample_dir: Path) -> None:
    root = make_isic_copy(tmp_path, sample_dir)
    truth = pd.read_csv(root / ISIC_GROUND_TRUTH, dtype=str)
    truth.loc[3, "NV"] = "1.0" if truth.loc[3, "NV"] == "0.0" else "0.0"
    truth.loc[5, "MEL"] = "x"
    truth.to_csv(root / ISIC_GROUND_TRUTH, index=False)
    groups = pd.read_csv(root / ISIC_GROUPINGS, dtype=str)
    no_group, no_lesion = groups.loc[8, "image"], groups.loc[9, "image"]
    groups.loc[9, "lesion_id"] = ""
    groups.drop(index=8).to_csv(root / ISIC_GROUPINGS, index=False)
    scan = scan_dataset(root)
    text = messages(scan.problems)
    assert f"{ISIC_GROUND_TRUTH}:5: labels are not exactly one-hot: AKIEC='0.0', BCC=" in text
    assert f"{ISIC_GROUND_TRUTH}:7: labels are not exactly one-hot: " in text and "MEL='x'" in text
    assert f"{ISIC_GROUND_TRUTH}:10: image {no_group} has no row in {ISIC_GROUPINGS}" in text
    assert f"{ISIC_GROUPINGS}:10: missing lesion_id for image {no_lesion}" in text  # line 11 before the drop
    assert len(scan.problems) == 4 and len(scan.table) == 120
    with pytest.raises(DataError, match=rf"4 problems in labels .*{ISIC_GROUND_TRUTH}"):
        read_labels(root / ISIC_GROUND_TRUTH)


def test_isic_missing_groupings_and_images(tmp_path: Path, sample_dir: Path) -> None:
    root = make_isic_copy(tmp_path, sample_dir)
    (root / ISIC_GROUPINGS).unlink()
    shutil.rmtree(root / ISIC_IMAGES)
    with pytest.raises(DataError, match=rf"{ISIC_GROUPINGS}: file not found"):
        read_labels(root, format="isic2018")
    scan = scan_dataset(root)
    assert [str(problem) for problem in scan.problems] == [
        f"{root / ISIC_GROUPINGS}: file not found",
        f"{root / ISIC_IMAGES}: image folder not found",
    ]
