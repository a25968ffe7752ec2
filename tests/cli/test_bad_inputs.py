"""The bad-input catalogue: every bad input the project refuses, through the real `hamtune` command.

Each case builds its input in a fresh directory, runs the command there, and checks that it
exits non-zero with one `hamtune: error:` reason naming the file, key or row, prints no
traceback, and leaves that directory exactly as it was (nothing written, nothing overwritten).
Cases refused before TensorFlow or Ray is imported run in this process through the CLI's
`main(argv)` (a second or two each, instead of a Python start-up and pandas import); the cases in
`SUBPROCESS` run `python -m hamtune ...`: those that start Ray or TensorFlow, and a few cheap ones
that prove the installed entry point refuses the same way. The per-module tests
(tests/config/test_config.py, tests/data/, tests/training/test_models.py) check each rule's details; this file
is the one place where the whole list is run end to end.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from hamtune.data.synth import write_synthetic
from tests.support.sweeps import hamtune_env
from tests.support.handmade import trial_row, write_results

METADATA = "HAM10000_metadata.csv"
PART_1 = "HAM10000_images_part_1"
#: A real experiment made by hamtune 0.1.0 (commit 8402656, the last before the package re-layout) with
#: `hamtune sweep` on a one-trial synthetic sweep (its sweep.yaml); only its checkpoint arrays (`*.npz`,
#: 84 MB) were left out, which the refusal never reaches. Its pickled Ray Tune state names
#: `hamtune.searcher`, `hamtune.progress`, `hamtune.recorder` and `hamtune.sweep`, paths 0.2.0 moved.
LEGACY_EXPERIMENT = Path(__file__).resolve().parent / "experiment-0.1.0"

VALID_SWEEP: dict[str, Any] = {
    "name": "bad",
    "data": {"dir": None, "image_size": 32, "synthetic": {"images": 200, "seed": 0}},
    "space": {"models": ["densenet121"]},  # from scratch (weights none): no depth to search
    "search": {"seed": 0, "trials": 1, "max_concurrent": 1},
    "scheduler": "none",
    "training": {"epochs": 1, "warmup_epochs": 1, "batch_size": 32, "patience": 1, "weights": "none",
                 "mixed_precision": False},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "failures": {"max_retries": 0},
}


@dataclass(frozen=True)
class Inputs:
    """What the cases build on: the real sample, a clean synthetic set in the Kaggle layout."""

    sample: Path
    synthetic: Path


@dataclass(frozen=True)
class Case:
    """One bad input: `build` writes it into the case directory and returns the command's arguments."""

    what: str
    build: Callable[[Path, Inputs], list[str]]
    expect: tuple[str, ...]  # the file / key / row / value the reason must name


def sweep_file(where: Path, text: str | None = None, **changes: Any) -> list[str]:
    """A valid tiny sweep with dotted-key `changes` (or the raw `text`), storage in `where/runs`."""
    settings = copy.deepcopy(VALID_SWEEP)
    settings["storage"] = str(where / "runs")
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        target = settings
        for section in sections:
            target = target[section]
        target[key] = value
    path = where / "bad.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(settings, sort_keys=False))
    return ["sweep", str(path)]


def dataset_copy(where: Path, inputs: Inputs, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 source: str = "synthetic") -> Path:
    """A Kaggle-layout copy of a data set: images symlinked, metadata rewritten after `edit`."""
    origin = getattr(inputs, source)
    root = where / "data"
    (root / PART_1).mkdir(parents=True)
    for image in sorted(origin.glob("HAM10000_images_part_*/*.jpg")):
        (root / PART_1 / image.name).symlink_to(image)
    frame = pd.read_csv(origin / METADATA, dtype=str, keep_default_na=False)
    (edit(frame) if edit else frame).to_csv(root / METADATA, index=False)
    return root


def _on_data(edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None, source: str = "synthetic"):
    def build(where: Path, inputs: Inputs) -> list[str]:
        return sweep_file(where, data__dir=str(dataset_copy(where, inputs, edit, source)))
    return build


def _relabel(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[3, "dx"] = "melanoma"  # data row 3 is CSV line 5
    return frame


def _duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[2]]], ignore_index=True)


def _corrupt_image(where: Path, inputs: Inputs) -> list[str]:
    root = dataset_copy(where, inputs)
    victim = sorted((root / PART_1).iterdir())[7]
    victim.unlink()
    victim.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 20)
    return sweep_file(where, data__dir=str(root))


def _existing_experiment(where: Path, inputs: Inputs) -> list[str]:
    experiment = where / "runs" / "bad"
    experiment.mkdir(parents=True)
    (experiment / "hamtune.json").write_text(json.dumps({"name": "bad"}))
    pd.DataFrame({"trial_id": ["t1"], "status": ["TERMINATED"]}).to_parquet(experiment / "trials.parquet")
    return sweep_file(where)


def _experiment_of_the_old_layout(where: Path, inputs: Inputs) -> list[str]:
    """A real experiment made by hamtune 0.1.0, whose Ray state names modules 0.2.0 moved (tests/sweep/)."""
    shutil.copytree(LEGACY_EXPERIMENT, where / "runs" / "legacy")
    text = (LEGACY_EXPERIMENT / "sweep.yaml").read_text().replace("/tmp/legacy/runs", str(where / "runs"))
    (where / "legacy.yaml").write_text(text)
    return ["sweep", str(where / "legacy.yaml"), "--resume"]


def _foreign_directory(where: Path, inputs: Inputs) -> list[str]:
    (where / "runs" / "bad").mkdir(parents=True)
    (where / "runs" / "bad" / "experiment_state.pkl").write_bytes(b"not yours to unpickle")
    return [*sweep_file(where), "--resume"]


def _other_weights(where: Path) -> Path:
    """A real Keras weights file of another architecture (a one-layer model)."""
    weights = where / "other.weights.h5"
    script = ("import sys, keras; m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]); "
              "m.save_weights(sys.argv[1])")
    subprocess.run([sys.executable, "-c", script, str(weights)], check=True, capture_output=True)
    return weights


def _wrong_weights(where: Path, inputs: Inputs) -> list[str]:
    return ["train", "--data", str(inputs.synthetic), "--model", "densenet121", "--weights", str(_other_weights(where)),
            "--image-size", "32", "--epochs", "1", "--warmup-epochs", "1"]


def _wrong_weights_in_sweep(where: Path, inputs: Inputs) -> list[str]:
    return sweep_file(where, training__weights={"densenet121": str(_other_weights(where))})


def _file(where: Path) -> Path:
    """An existing file where a directory is expected."""
    path = where / "afile"
    path.write_text("not a directory")
    return path


def _refit_into_a_file(where: Path, inputs: Inputs) -> list[str]:
    experiment = write_results(where / "runs" / "exp", [trial_row("t1")])
    (experiment / "hamtune.json").write_text(json.dumps({"name": "exp"}))
    return ["refit", str(experiment), "--out", str(_file(where))]


def _started_then_edited(where: Path, *flags: str, **changes: Any) -> list[str]:
    """An experiment started with the valid sweep, whose file is then edited (`changes`) before --resume."""
    from hamtune.config import load_sweep, to_dict
    from hamtune.store.experiment import experiment_for

    sweep = load_sweep(Path(sweep_file(where)[1]))
    experiment_for(sweep.storage, sweep.name).create(sweep.text, to_dict(sweep), pd.DataFrame(), {"fingerprint": "f"})
    return [*sweep_file(where, **changes), "--resume", *flags]


def _train(inputs: Inputs, *flags: str) -> list[str]:
    return ["train", "--data", str(inputs.synthetic), "--weights", "none", "--image-size", "32", "--epochs", "1", *flags]


CASES = [
    Case("malformed YAML", lambda w, i: sweep_file(w, text="name: bad\nspace: {models: [densenet121\n"),
         ("bad.yaml:3", "invalid YAML")),
    Case("unknown key", lambda w, i: sweep_file(w, search__trails=4), ("bad.yaml", "'trails'", "search", "'trials'")),
    Case("wrong type", lambda w, i: sweep_file(w, search__trials="many"), ("bad.yaml", "search.trials", "'many'")),
    Case("empty range", lambda w, i: sweep_file(w, space__dropout={"low": 0.3, "high": 0.3}),
         ("bad.yaml", "space.dropout.low", "0.3")),
    Case("inverted range", lambda w, i: sweep_file(w, space__learning_rate={"low": 1e-2, "high": 1e-4}),
         ("bad.yaml", "space.learning_rate.low", "0.01")),
    Case("unknown model name", lambda w, i: sweep_file(w, space__models=["resnet50"]),
         ("bad.yaml", "space.models[0]", "resnet50", "densenet121")),
    Case("unfreeze depth above the model's block count",
         lambda w, i: sweep_file(w, space__unfreeze_depth={"densenet121": {"low": 0, "high": 99}},
                                 training__weights="imagenet"),
         ("bad.yaml", "space.unfreeze_depth.densenet121.high", "58", "99")),
    Case("an unfreeze range for a model trained from scratch",
         lambda w, i: sweep_file(w, space__unfreeze_depth={"densenet121": {"low": 0, "high": 3}}),
         ("bad.yaml", "space.unfreeze_depth.densenet121 does not apply", "training.weights is 'none'")),
    Case("fraction outside (0, 1)", lambda w, i: sweep_file(w, data__val_fraction=1.5),
         ("bad.yaml", "data.val_fraction", "1.5")),
    Case("missing data directory", lambda w, i: sweep_file(w, data__dir=str(w / "nowhere")),
         ("data.dir", "nowhere")),
    Case("metadata missing a column", _on_data(lambda f: f.drop(columns=["dx"])), (METADATA, "dx")),
    Case("unknown label", _on_data(_relabel), (f"{METADATA}:5", "melanoma")),
    Case("duplicate image id", _on_data(_duplicate), (METADATA, "duplicate image_id")),
    Case("corrupt image", _corrupt_image, ("cannot decode image", "data/HAM10000_images_part_1/")),
    Case("a class too small to split", _on_data(source="sample"), ("akiec",)),
    Case("existing experiment name without --resume", _existing_experiment, ("runs/bad", "already exists", "--resume")),
    Case("--resume of a directory that is not a hamtune experiment", _foreign_directory,
         ("runs/bad", "not a hamtune experiment")),
    Case("--resume of an experiment started before the 0.2.0 re-layout", _experiment_of_the_old_layout,
         ("runs/legacy", "hamtune 0.1.0", "pip install 'hamtune==0.1.0'", "--name")),
    Case("more GPUs per trial than any node has", lambda w, i: sweep_file(w, resources__gpus_per_trial=1),
         ("resources", "1 GPU", "gpus_per_trial")),
    Case("a weights file for the wrong architecture", _wrong_weights,
         ("other.weights.h5", "does not fit backbone densenet121")),
    Case("a sweep's weights file for the wrong architecture, refused before any trial", _wrong_weights_in_sweep,
         ("bad.yaml", "training.weights.densenet121", "other.weights.h5", "does not fit backbone densenet121")),
    Case("a search seed that the trials' seed offsets would push past numpy's range",
         lambda w, i: sweep_file(w, search__seed=2**32 - 1), ("bad.yaml", "search.seed", "2147483647", "4294967295")),
    Case("--storage naming an existing file", lambda w, i: [*sweep_file(w), "--storage", str(_file(w))],
         ("bad.yaml", "storage", "afile exists and is not a directory")),
    Case("a cache directory that is a file", lambda w, i: sweep_file(w, data__cache_dir=str(_file(w))),
         ("bad.yaml", "data.cache_dir", "afile exists and is not a directory")),
    Case("an image size far above the images' own", lambda w, i: sweep_file(w, data__image_size=2240),
         ("bad.yaml", "data.image_size", "[32, 1024]", "2240")),
    Case("--address with a port no server can listen on",
         lambda w, i: [*sweep_file(w), "--address", "localhost:99999"], ("--address", "[1, 65535]", "localhost:99999")),
    Case("hamtune train --seed outside numpy's range", lambda w, i: _train(i, "--seed", str(2**32)),
         ("search.seed", "2147483647", "4294967296")),
    Case("hamtune train --cpus that is not a positive number", lambda w, i: _train(i, "--cpus", "nan"),
         ("resources.cpus_per_trial", "(0, inf)", "nan")),
    Case("refit --out naming an existing file", _refit_into_a_file, ("afile", "not an empty directory", "--out")),
    Case("--resume with a sweep file edited since the experiment started",
         lambda w, i: _started_then_edited(w, search__seed=3),
         ("bad.yaml", "--resume", "search.seed: 0 then, 3 now", "--name")),
    Case("--trials with --resume", lambda w, i: _started_then_edited(w, "--trials", "5"),
         ("bad.yaml", "search.trials: 1 then, 5 now", "--trials cannot extend it")),
    Case("an Optuna storage URL that cannot be opened",
         lambda w, i: sweep_file(w, search__storage=f"sqlite:///{w}/no/such/dir/studies.db"),
         ("bad.yaml", "search.storage", "no/such/dir/studies.db", "unable to open database file")),
    Case("data split --out naming a directory", lambda w, i: ["data", "split", str(i.synthetic), "--out", str(w)],
         ("is a directory", "split.csv")),
]
#: The slow cases and why (tests/README.md): they start Ray, or load a weights file into a real backbone.
SLOW = {"more GPUs per trial than any node has": "ray", "a weights file for the wrong architecture": "backbone",
        "a sweep's weights file for the wrong architecture, refused before any trial": "backbone",
        "an Optuna storage URL that cannot be opened": "ray"}
#: Run as `python -m hamtune`: the slow ones (Ray or TensorFlow must not start in the test process),
#: and one refusal each of the config, the data check and the CLI's own argument checks.
SUBPROCESS = set(SLOW) | {"malformed YAML", "corrupt image", "--address with a port no server can listen on"}


@pytest.fixture(scope="session")
def inputs(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    synthetic = write_synthetic(tmp_path_factory.mktemp("bad-inputs") / "synthetic", images=200, size=(120, 90))
    return Inputs(sample=sample_dir, synthetic=synthetic)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (links not followed) with its size and modification time."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def run_in_process(args: list[str], cwd: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`hamtune ARGS` through `main(argv)` in `cwd` with the subprocess's environment: (exit code, stdout, stderr).

    An exception other than the refusal escapes and fails the test, as a traceback would; so does
    a case that imports TensorFlow, Keras or Ray on its way to the refusal (it belongs in `SUBPROCESS`).
    """
    from hamtune.cli import main

    for key, value in hamtune_env(cache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    loaded = set(sys.modules)
    code = main(args)
    out, err = capsys.readouterr()
    heavy = {name.split(".")[0] for name in set(sys.modules) - loaded} & {"tensorflow", "keras", "ray"}
    assert not heavy, f"refused only after importing {sorted(heavy)}: run this case as a subprocess"
    return code, out, err


def reason(stderr: str) -> list[str]:
    """The `hamtune: error:` line and the indented detail lines under it (a list of data problems)."""
    lines = stderr.splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("hamtune: error:")]
    assert len(starts) == 1, f"expected one `hamtune: error:` line, got:\n{stderr[-3000:]}"
    found = [lines[starts[0]]]
    for line in lines[starts[0] + 1:]:
        if not line.startswith("  "):
            break
        found.append(line)
    return found


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.what,
                 marks=[pytest.mark.slow, getattr(pytest.mark, SLOW[case.what])] if case.what in SLOW else [])
    for case in CASES
])
def test_bad_input_is_refused_with_one_reason_and_nothing_written(
    case: Case, inputs: Inputs, tmp_path: Path, hamtune_cache: Path, record_property: pytest.RecordProperty,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    args = case.build(tmp_path, inputs)
    before = snapshot(tmp_path)
    if case.what in SUBPROCESS:
        result = subprocess.run([sys.executable, "-m", "hamtune", *args], cwd=tmp_path,
                                env=hamtune_env(hamtune_cache), capture_output=True, text=True, timeout=600)
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        code, stdout, stderr = run_in_process(args, tmp_path, hamtune_cache, monkeypatch, capsys)
    assert code != 0, stdout[-2000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    lines = reason(stderr)
    text = "\n".join(lines)
    for expected in case.expect:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert snapshot(tmp_path) == before, "the refused command wrote or changed files"
    shown = " / ".join(line.strip() for line in lines).removeprefix("hamtune: error: ")
    record_property("observed", shown.replace(str(tmp_path), "<case dir>"))


def test_the_catalogue_covers_every_bad_input_the_issue_lists() -> None:
    listed = {"malformed YAML", "unknown key", "wrong type", "empty range", "inverted range", "unknown model name",
              "unfreeze depth above the model's block count", "an unfreeze range for a model trained from scratch",
              "fraction outside (0, 1)",
              "more GPUs per trial than any node has", "missing data directory", "metadata missing a column",
              "unknown label", "duplicate image id", "corrupt image", "a class too small to split",
              "existing experiment name without --resume",
              "--resume of a directory that is not a hamtune experiment",
              "--resume of an experiment started before the 0.2.0 re-layout", "a weights file for the wrong architecture",
              "a sweep's weights file for the wrong architecture, refused before any trial",
              "a search seed that the trials' seed offsets would push past numpy's range",
              "--storage naming an existing file", "a cache directory that is a file",
              "an image size far above the images' own", "--address with a port no server can listen on",
              "hamtune train --seed outside numpy's range", "hamtune train --cpus that is not a positive number",
              "refit --out naming an existing file", "data split --out naming a directory",
              "--resume with a sweep file edited since the experiment started", "--trials with --resume",
              "an Optuna storage URL that cannot be opened"}
    assert {case.what for case in CASES} == listed
