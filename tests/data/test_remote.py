"""Remote datasets fetched once per node (file:// URIs through pyarrow's real LocalFileSystem),
and `PreparedData.on_this_node`: a trial finds its own node's copy of the driver's data."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from hamtune.config import parse_sweep
from hamtune.data.layout import load_dataset
from hamtune.data.prepared import prepare_data
from hamtune.data import remote as remote_module
from hamtune.data.remote import DATASETS_DIR, MANIFEST, _copy_file, fetch_dataset, local_name
from hamtune.data.synth import write_synthetic
from hamtune.errors import DataError


def _tree(root: Path) -> dict[str, bytes]:
    return {
        (Path(folder) / name).relative_to(root).as_posix(): (Path(folder) / name).read_bytes()
        for folder, _, names in os.walk(root) for name in names if name != MANIFEST
    }


@pytest.fixture
def remote(tmp_path: Path, sample_dir: Path) -> Path:
    """A small mutable "remote" dataset: the metadata and 12 real sample images."""
    root = tmp_path / "bucket" / "ham"
    images = sorted((sample_dir / "HAM10000_images_part_1").glob("*.jpg"))[:12]
    (root / "HAM10000_images_part_1").mkdir(parents=True)
    for image in images:
        shutil.copy2(image, root / "HAM10000_images_part_1" / image.name)
    shutil.copy2(sample_dir / "HAM10000_metadata.csv", root / "HAM10000_metadata.csv")
    return root


def test_fetch_copies_the_real_sample_once_and_reuses_it(tmp_path: Path, sample_dir: Path) -> None:
    first = fetch_dataset(sample_dir.as_uri(), tmp_path / "cache")

    assert first.path == tmp_path / "cache" / DATASETS_DIR / local_name(sample_dir.as_uri())
    assert first.path.name.startswith("ham10000-sample-")
    assert (first.files, first.downloaded_files) == (125, 125)  # 124 images + metadata
    assert first.downloaded_bytes == first.bytes == sum(len(b) for b in _tree(sample_dir).values())
    assert _tree(first.path) == _tree(sample_dir)
    assert load_dataset(first.path).fingerprint == load_dataset(sample_dir).fingerprint

    again = fetch_dataset(sample_dir.as_uri(), tmp_path / "cache")
    assert (again.path, again.downloaded_files, again.downloaded_bytes) == (first.path, 0, 0)


def _fetch_in_process(uri: str, cache: str, barrier: multiprocessing.Barrier, results: multiprocessing.Queue) -> None:
    barrier.wait()
    fetched = fetch_dataset(uri, Path(cache), threads=2)
    results.put((str(fetched.path), fetched.downloaded_files))


def test_two_processes_fetching_at_once_fetch_once(tmp_path: Path, sample_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_fetch_in_process, args=(sample_dir.as_uri(), str(tmp_path), barrier, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    outcome = sorted(results.get(timeout=5) for _ in processes)

    assert outcome[0][0] == outcome[1][0]
    assert sorted(count for _, count in outcome) == [0, 125]
    assert _tree(Path(outcome[0][0])) == _tree(sample_dir)


def test_an_interrupted_fetch_is_resumed_not_restarted(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = []

    def ctrl_c_after_five(*args: object) -> int:  # the user presses Ctrl-C during the 6th file
        if len(copied) == 5:
            raise KeyboardInterrupt
        copied.append(args[-1])
        return _copy_file(*args)

    monkeypatch.setattr(remote_module, "_copy_file", ctrl_c_after_five)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(remote.as_uri(), tmp_path / "cache", threads=1)
    monkeypatch.undo()
    target = tmp_path / "cache" / DATASETS_DIR / local_name(remote.as_uri())
    assert not target.exists()  # an incomplete copy is never in place
    (partial,) = target.parent.glob(".*.partial")
    kept = [rel for rel in _tree(partial) if not rel.endswith(".part")]
    assert sorted(kept) == sorted(copied) and len(kept) == 5

    resumed = fetch_dataset(remote.as_uri(), tmp_path / "cache")
    assert resumed.path == target
    assert resumed.downloaded_files == resumed.files - len(kept)
    assert _tree(target) == _tree(remote)
    assert not list(target.parent.glob(".*.partial"))


def test_a_truncated_local_file_is_detected_and_fetched_again(tmp_path: Path, remote: Path) -> None:
    fetched = fetch_dataset(remote.as_uri(), tmp_path)
    damaged = next((fetched.path / "HAM10000_images_part_1").glob("*.jpg"))
    damaged.write_bytes(damaged.read_bytes()[:100])

    repaired = fetch_dataset(remote.as_uri(), tmp_path)
    assert repaired.downloaded_files == 1
    assert _tree(repaired.path) == _tree(remote)


def test_a_changed_remote_updates_the_local_copy(tmp_path: Path, remote: Path) -> None:
    fetch_dataset(remote.as_uri(), tmp_path)
    images = sorted((remote / "HAM10000_images_part_1").glob("*.jpg"))
    images[0].unlink()
    with images[1].open("ab") as handle:
        handle.write(b"\0" * 10)
    shutil.copy2(images[2], remote / "extra.jpg")

    updated = fetch_dataset(remote.as_uri(), tmp_path)
    assert updated.downloaded_files == 2
    assert _tree(updated.path) == _tree(remote)


def test_a_file_changed_while_fetched_is_an_error(tmp_path: Path, remote: Path) -> None:
    import pyarrow.fs as pafs

    source = next((remote / "HAM10000_images_part_1").glob("*.jpg"))
    size = source.stat().st_size
    with pytest.raises(DataError, match=rf"changed while it was fetched \({size} bytes read, {size + 1} listed\)"):
        _copy_file(pafs.LocalFileSystem(), str(source), tmp_path / "x.jpg", size + 1, None, "file:///r", "x.jpg")
    with pytest.raises(DataError, match=r"cannot fetch file:///r/y\.jpg"):
        _copy_file(pafs.LocalFileSystem(), str(tmp_path / "nope.jpg"), tmp_path / "y.jpg", 1, None, "file:///r", "y.jpg")


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: None, r"must be a directory of images, found nothing there"),
    (lambda root: root.write_text("x"), r"must be a directory of images, found a file there"),
    (lambda root: root.mkdir(), r"holds no files"),
])
def test_unusable_remote_locations_are_data_errors(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "remote"
    make(root)
    with pytest.raises(DataError, match=rf"data\.dir 'file://{root}' {message}"):
        fetch_dataset(root.as_uri(), tmp_path / "cache")


def test_unopenable_uri_and_unwritable_cache_are_data_errors(tmp_path: Path, remote: Path) -> None:
    with pytest.raises(DataError, match=r"data\.dir 'nope://bucket/ham' cannot be opened"):
        fetch_dataset("nope://bucket/ham", tmp_path)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    with pytest.raises(DataError, match=r"cannot create .*cache-is-a-file/datasets for the data of file://"):
        fetch_dataset(remote.as_uri(), blocker)


# --- PreparedData.on_this_node: the driver prepares, each node resolves its own copy ----------


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (small images: only the file layout matters here)."""
    return write_synthetic(tmp_path_factory.mktemp("source") / "ham", images=140, seed=0, size=(64, 48))


def _data_config(data_dir: str | None, **synthetic):
    data = {"dir": data_dir, "image_size": 32}
    if synthetic:
        data["synthetic"] = synthetic
    return parse_sweep({"name": "t", "data": data, "space": {"models": ["densenet121"]}}).data


def _same_but_paths(a, b) -> None:
    assert a.index.fingerprint == b.index.fingerprint
    columns = [c for c in a.index.table.columns if c != "path"]
    assert a.index.table[columns].equals(b.index.table[columns])
    assert a.split.equals(b.split)


def test_a_uri_dataset_is_fetched_into_each_nodes_own_cache(
    tmp_path: Path, synthetic_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(tmp_path / "driver"))
    driver = prepare_data(_data_config(synthetic_source.as_uri()))
    assert driver.index.root.is_relative_to(tmp_path / "driver" / DATASETS_DIR)

    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(tmp_path / "worker"))
    worker = driver.on_this_node()
    assert worker.cache_dir == tmp_path / "worker"
    assert worker.index.root.is_relative_to(tmp_path / "worker" / DATASETS_DIR)
    assert worker.index.table["path"].str.startswith(f"{worker.index.root}/").all()
    assert worker.index.table["path"].map(os.path.isfile).all()
    _same_but_paths(driver, worker)


def test_synthetic_data_is_generated_in_each_nodes_own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(tmp_path / "driver"))
    driver = prepare_data(_data_config(None, images=140, seed=3))
    monkeypatch.setenv("HAMTUNE_CACHE_DIR", str(tmp_path / "worker"))
    worker = driver.on_this_node()

    assert worker.index.root.is_relative_to(tmp_path / "worker" / "synthetic")
    assert worker.index.table["path"].map(os.path.isfile).all()
    _same_but_paths(driver, worker)


def test_a_local_directory_must_be_on_the_node_and_hold_the_same_files(
    tmp_path: Path, synthetic_source: Path
) -> None:
    local = tmp_path / "ham"
    shutil.copytree(synthetic_source, local)
    driver = prepare_data(_data_config(str(local)))
    assert driver.on_this_node().index.table.equals(driver.index.table)

    image = Path(driver.index.table["path"].iloc[0])
    image.write_bytes(image.read_bytes() + b"\0")
    with pytest.raises(DataError, match=r"is not the one the driver indexed: 0 of 140 images missing, 1 of another size"):
        driver.on_this_node()
    image.unlink()
    with pytest.raises(DataError, match=rf"1 of 140 images missing, 0 of another size \(first: {image}\)"):
        driver.on_this_node()

    shutil.rmtree(local)
    with pytest.raises(DataError, match=rf"data\.dir '{local}' is not a directory on "):
        driver.on_this_node()


def test_an_index_outside_its_root_cannot_be_moved(tmp_path: Path, synthetic_source: Path) -> None:
    from hamtune.data.prepared import relocate

    driver = prepare_data(_data_config(str(synthetic_source)))
    index = dataclasses.replace(driver.index, root=tmp_path / "elsewhere")
    with pytest.raises(DataError, match=rf"is not under the dataset root {tmp_path / 'elsewhere'}"):
        relocate(index, tmp_path)
