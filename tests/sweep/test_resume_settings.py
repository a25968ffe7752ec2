"""`hamtune sweep --resume` runs only the settings its experiment started with.

The trials of a resumed sweep are rebuilt from the file given now; a file edited since would
silently train the rest of the sweep otherwise. Locations (storage, data dir, cache dir, name)
may change: an experiment or its data can move.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hamtune.cli import main
from hamtune.config import load_sweep, parse_sweep, to_dict
from hamtune.store.experiment import CONFIG_FILE, experiment_for
from hamtune.sweep.resume import setting_changes

SAVED = {"name": "a", "storage": "/runs", "data": {"dir": "/data", "image_size": 32},
         "search": {"seed": 0, "trials": 12}, "space": {"models": ["densenet121"]},
         "training": {"weights": "none"}}


def test_no_change_but_a_location_is_no_change() -> None:
    moved = {**SAVED, "storage": "/elsewhere", "data": {"dir": "/mnt/data", "image_size": 32}}
    assert setting_changes(SAVED, moved) == []


def test_each_change_is_listed_with_both_values_in_key_order() -> None:
    given = {**SAVED, "search": {"seed": 1, "trials": 12}, "space": {"models": ["densenet121", "convnext_small"]},
             "training": {"weights": {"densenet121": "none"}}, "data": {"dir": "/data", "image_size": 32}}
    assert setting_changes(SAVED, given) == [
        "search.seed: 0 then, 1 now",
        'space.models: ["densenet121"] then, ["densenet121", "convnext_small"] now',
        'training.weights: "none" then, (not set) now',
        'training.weights.densenet121: (not set) then, "none" now',
    ]


@pytest.fixture
def started(tmp_path: Path) -> Path:
    """A sweep file and the experiment it started (its saved settings, as `hamtune sweep` writes them)."""
    settings = {"name": "resumed", "storage": str(tmp_path / "runs"),
                "data": {"synthetic": {"images": 100, "seed": 0}, "image_size": 32},
                "space": {"models": ["densenet121"]}, "search": {"seed": 0, "trials": 4},
                "training": {"epochs": 2, "weights": "none"}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(settings))
    sweep = load_sweep(path)
    experiment = experiment_for(sweep.storage, sweep.name)
    experiment.create(sweep.text, to_dict(sweep), pd.DataFrame({"image_id": []}), {"fingerprint": "f"})
    return path


def _edit(path: Path, section: str, key: str, value: object) -> None:
    settings = yaml.safe_load(path.read_text())
    settings[section][key] = value
    path.write_text(yaml.safe_dump(settings))


def test_an_edited_sweep_file_is_refused_naming_every_changed_key(
        started: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(started, "training", "epochs", 5)
    _edit(started, "search", "seed", 7)
    assert main(["sweep", str(started), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"hamtune: error: {started}: --resume: these settings differ from the ones ")
    # max_epochs is resolved from training.epochs: the settings as the sweep would run them differ there too
    assert (f"({CONFIG_FILE}): scheduler.max_epochs: 2 then, 5 now; search.seed: 0 then, 7 now; "
            "training.epochs: 2 then, 5 now. ") in err
    assert err.rstrip().endswith("put them back, or start a new experiment with --name")


def test_trials_cannot_extend_a_resumed_sweep(started: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(started), "--resume", "--trials", "8"]) == 2
    err = capsys.readouterr().err
    assert "search.trials: 4 then, 8 now" in err
    assert "Ray Tune restores its number of trials, so --trials cannot extend it" in err


def test_a_setting_added_since_the_experiment_started_compares_as_its_default(started: Path) -> None:
    """An experiment saved before `training.augmentation` existed ran what its default means."""
    from hamtune.sweep.resume import _saved_settings

    sweep = load_sweep(started)
    experiment = experiment_for(sweep.storage, sweep.name)
    old = json.loads(experiment.read_text(CONFIG_FILE))
    del old["training"]["augmentation"]
    experiment.write_text(CONFIG_FILE, json.dumps(old))
    assert setting_changes(_saved_settings(experiment), json.loads(json.dumps(to_dict(sweep)))) == []
    assert to_dict(parse_sweep(old)) == to_dict(sweep)
