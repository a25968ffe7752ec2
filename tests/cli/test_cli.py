"""The command line: every bad input is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hamtune.cli import build_parser, main, resume_command
from tests.support.shared import REPO


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_on_the_real_sample_is_clean(capsys: pytest.CaptureFixture, sample_dir: Path) -> None:
    code, out, _ = run(capsys, "data", "check", str(sample_dir))
    assert code == 0
    assert "images: 124" in out and "600x450 (124)" in out


def test_check_reports_problems_with_file_and_row(capsys: pytest.CaptureFixture, sample_dir: Path,
                                                   tmp_path: Path) -> None:
    meta = pd.read_csv(sample_dir / "HAM10000_metadata.csv")
    meta.loc[3, "dx"] = "melanoma"
    (tmp_path / "HAM10000_images_part_1").mkdir()
    for image_id in meta["image_id"][1:]:
        (tmp_path / "HAM10000_images_part_1" / f"{image_id}.jpg").symlink_to(
            sample_dir / "HAM10000_images_part_1" / f"{image_id}.jpg")
    meta.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    code, out, _ = run(capsys, "data", "check", str(tmp_path))
    assert code == 1
    assert "HAM10000_metadata.csv:5:" in out and "melanoma" in out  # header is line 1
    assert meta["image_id"][0] in out  # listed but missing


@pytest.mark.parametrize(("args", "message"), [
    (["data", "check", "/no/such/dir"], "does not exist"),
    (["data", "check", ".", "--format", "dicom"], "dicom"),
    (["data", "split", "/no/such.csv", "--out", "x.csv"], "no/such.csv"),
    (["sweep", "/no/such/sweep.yaml"], "no/such/sweep.yaml"),
    (["train", "--model", "resnet50", "--weights", "none"], "resnet50"),
    (["train", "--model", "densenet121", "--unfreeze-depth", "99", "--weights", "imagenet"],
     "--unfreeze-depth must be an int in [0, 58] for densenet121, got 99"),
    (["train", "--unfreeze-depth", "3", "--weights", "none"], "--unfreeze-depth does not apply with --weights none"),
    (["train", "--warmup-epochs", "1", "--weights", "none"], "--warmup-epochs does not apply with --weights none"),
    (["train", "--learning-rate", "-1", "--weights", "none"], "--learning-rate must be a float in (0, inf), got -1.0"),
    (["train", "--dropout", "1", "--weights", "none"], "--dropout must be a float in [0, 1), got 1.0"),
    (["train", "--class-weight-power", "-0.5", "--weights", "none"], "--class-weight-power must be a float in [0, inf)"),
])
def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("hamtune: error: ") and message in err


def test_split_of_the_full_metadata(capsys: pytest.CaptureFixture, full_metadata: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "split.csv"
    code, out, _ = run(capsys, "data", "split", str(full_metadata), "--out", str(out_file), "--seed", "3")
    assert code == 0 and "wrote 10015 rows" in out
    split = pd.read_csv(out_file)
    assert list(split.columns) == ["image_id", "lesion_id", "dx", "split"]
    assert split.groupby("lesion_id")["split"].nunique().max() == 1


def test_split_of_the_sample_names_the_rare_classes(capsys: pytest.CaptureFixture, sample_dir: Path,
                                                    tmp_path: Path) -> None:
    code, _, err = run(capsys, "data", "split", str(sample_dir), "--out", str(tmp_path / "s.csv"))
    assert code == 2 and "akiec" in err and "rare" in err
    assert not (tmp_path / "s.csv").exists()
    code, _, _ = run(capsys, "data", "split", str(sample_dir), "--out", str(tmp_path / "s.csv"), "--rare", "train")
    assert code == 0 and (tmp_path / "s.csv").exists()


def test_synth_then_check(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out_dir = tmp_path / "synth"
    code, _, _ = run(capsys, "data", "synth", str(out_dir), "--images", "150", "--size", "120", "90")
    assert code == 0
    code, out, _ = run(capsys, "data", "check", str(out_dir))
    assert code == 0 and "images: 150" in out and "120x90 (150)" in out
    code, _, err = run(capsys, "data", "synth", str(out_dir), "--images", "150")
    assert code == 2 and str(out_dir) in err  # never overwrites


def test_sweep_file_errors_name_file_and_key(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    shutil.copy(REPO / "sweeps" / "smoke.yaml", bad)
    bad.write_text(bad.read_text().replace("trials: 4", "trails: 4"))
    code, _, err = run(capsys, "sweep", str(bad))
    assert code == 2 and "bad.yaml" in err and "trails" in err


def test_the_command_starts_without_tensorflow_or_ray() -> None:
    """Nor does `evaluate`'s module import Keras: it must first read the sweep's backend and set
    KERAS_BACKEND before Keras starts (tests/training/test_jax_backend.py runs it on JAX)."""
    probe = ("import sys, hamtune.cli, hamtune.evaluation.evaluate; hamtune.cli.build_parser(); "
             "print(sorted(m for m in ('tensorflow', 'ray', 'keras', 'optuna') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_console_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "hamtune", "data", "check", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("hamtune: error:")


def _commands(parser: argparse.ArgumentParser, name: str = "hamtune") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                found += _commands(child, f"{name} {sub}")
    return found


@pytest.mark.parametrize(("command", "parser"), _commands(build_parser()), ids=lambda value: str(value).replace(" ", "-"))
def test_every_flag_of_every_command_is_explained_with_its_default(command: str, parser: argparse.ArgumentParser) -> None:
    """`--help` explains each argument; a flag with a default value says what it is (or that it is required)."""
    help_text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"
        assert " ".join(action.help.split()).replace("%(default)s", str(action.default)) in help_text
        if action.option_strings and action.default not in (None, False):
            assert "default" in action.help or action.required, f"{command} {action.option_strings[0]}: no default"


def test_an_interrupted_sweep_names_the_command_that_continues_it() -> None:
    args = build_parser().parse_args(["sweep", "my sweep.yaml", "--storage", "s3://b/runs", "--trials", "9"])
    assert resume_command(args) == "hamtune sweep 'my sweep.yaml' --storage s3://b/runs --resume"


def test_the_default_sweep_file_exists() -> None:
    args = build_parser().parse_args(["sweep"])
    assert Path(args.sweep_file).is_file() and Path(args.sweep_file).name == "smoke.yaml"
