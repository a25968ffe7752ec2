"""`--resume` of an experiment started before the package re-layout is refused in one line.

`experiment-0.1.0/` is a real experiment, made by hamtune 0.1.0 (commit 8402656, the last before
the re-layout) with `hamtune sweep` on a one-trial synthetic sweep; only its checkpoint arrays
(`*.npz`, 84 MB) were left out, which the refusal never reaches. Its Ray Tune state pickles
`hamtune.searcher`, `hamtune.progress`, `hamtune.recorder` and `hamtune.sweep.tune_trial`, module
paths 0.2.0 no longer has.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from hamtune.cli import main

LEGACY = Path(__file__).resolve().parent / "experiment-0.1.0"


def test_an_experiment_of_the_old_layout_is_refused_in_one_line_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    experiment = tmp_path / "runs" / "legacy"
    shutil.copytree(LEGACY, experiment)
    sweep = tmp_path / "legacy.yaml"
    sweep.write_text((LEGACY / "sweep.yaml").read_text().replace("/tmp/legacy/runs", str(tmp_path / "runs")))
    before = {path: path.read_bytes() for path in experiment.rglob("*") if path.is_file()}
    loaded = set(sys.modules)

    assert main(["sweep", str(sweep), "--resume"]) == 2

    err = capsys.readouterr().err.strip()
    assert err == (
        f"hamtune: error: --resume: {experiment} was started by hamtune 0.1.0, and its saved Ray Tune state "
        "names modules that hamtune 0.2.0 moved; resume it with hamtune 0.1.0 (pip install 'hamtune==0.1.0'), "
        "or start it again with another --name"
    )
    assert {name.split(".")[0] for name in set(sys.modules) - loaded} & {"ray", "tensorflow", "keras"} == set()
    assert {path: path.read_bytes() for path in experiment.rglob("*") if path.is_file()} == before
