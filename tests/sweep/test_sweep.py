"""End to end: a real sweep (Ray Tune + OptunaSearch, real ConvNeXt-Small and DenseNet121, tiny
images) through the `hamtune` command, and the tables and experiment directory it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hamtune.labels import CLASSES
from hamtune.metrics import SCALAR_METRICS
from tests.support.studies import assert_study_agrees_with_tables
from tests.support.sweeps import backbone_weights_file, hamtune_env, tiny_sweep_yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REQUIRED_TRIAL_COLUMNS = [
    "trial_id", "status", "model", "learning_rate", "dropout", "unfreeze_depth", "class_weight_power",
    "epochs_completed", "best_epoch", "val_macro_f1", "val_balanced_accuracy", "val_weighted_f1",
    "val_accuracy", "val_loss", "val_auc_macro", "val_mel_recall",
    *[f"val_{kind}_{c}" for kind in ("precision", "recall", "f1") for c in CLASSES],
    "confusion_matrix", "train_seconds", "node", "checkpoint", "mode", "diverged",
]


def run_hamtune(args: list[str], cache: Path, cwd: Path, timeout: float = 900,
                **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hamtune", *args], cwd=cwd, env={**hamtune_env(cache), **env},
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, hamtune_cache: Path) -> dict:
    """One real two-trial sweep (one trial per backbone, 2 epochs each: warm-up, then fine-tune),
    tracked in a local MLflow store."""
    import yaml

    root = tmp_path_factory.mktemp("sweep")
    sweep_file = root / "tiny.yaml"
    settings = yaml.safe_load(tiny_sweep_yaml("tiny", root / "runs"))
    settings["tracking"] = {"mlflow": f"sqlite:///{root / 'mlflow.db'}"}
    sweep_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    result = run_hamtune(["sweep", str(sweep_file)], hamtune_cache, root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"root": root, "file": sweep_file, "experiment": root / "runs" / "tiny", "result": result,
            "mlflow": settings["tracking"]["mlflow"]}


def test_trials_table_has_every_column_sorted_by_macro_f1(smoke: dict) -> None:
    trials = pd.read_parquet(smoke["experiment"] / "trials.parquet")
    assert set(REQUIRED_TRIAL_COLUMNS) <= set(trials.columns)
    assert len(trials) == 2 and set(trials["model"]) == {"convnext_small", "densenet121"}
    assert (trials["status"] == "TERMINATED").all() and not trials["diverged"].any()
    assert (trials["mode"] == "transfer").all()  # this sweep's models start from weights files
    assert trials["val_macro_f1"].is_monotonic_decreasing
    for column in ("unfreeze_depth", "epochs_completed", "best_epoch"):
        assert pd.api.types.is_integer_dtype(trials[column]), column
    assert (trials["epochs_completed"] == 2).all()
    for matrix in trials["confusion_matrix"]:
        assert len(matrix) == len(CLASSES) and all(len(row) == len(CLASSES) for row in matrix)
    assert trials["checkpoint"].map(lambda p: Path(p).is_dir()).all()


def test_every_epoch_reports_every_metric_for_both_backbones(smoke: dict) -> None:
    epochs = pd.read_parquet(smoke["experiment"] / "epochs.parquet")
    for model in ("convnext_small", "densenet121"):
        rows = epochs[epochs["model"] == model].sort_values("epoch")
        assert rows["epoch"].tolist() == [1, 2]
        assert rows["phase"].tolist() == [1, 2]  # warm-up (head only), then fine-tuning
        assert (rows["mode"] == "transfer").all()
        metrics = rows[[f"val_{key}" for key in SCALAR_METRICS if key != "auc_macro"]]
        assert metrics.notna().all().all()
        # The whole validation split is evaluated: confusion matrix counts = validation size.
        split = pd.read_csv(smoke["experiment"] / "split.csv")
        assert rows["confusion_matrix"].map(lambda m: sum(map(sum, m))).eq((split["split"] == "val").sum()).all()


def test_the_optuna_study_outlives_the_sweep_and_agrees_with_the_tables(smoke: dict) -> None:
    import optuna

    trials = assert_study_agrees_with_tables(smoke["experiment"])
    assert {trial.state for trial in trials.values()} == {optuna.trial.TrialState.COMPLETE}


def test_tables_carry_provenance_metadata(smoke: dict) -> None:
    meta = pq.read_schema(smoke["experiment"] / "trials.parquet").metadata
    assert meta[b"hamtune.sweep_file"].decode() == smoke["file"].read_text()
    versions = json.loads(meta[b"hamtune.versions"])
    assert {"hamtune", "tensorflow", "keras", "ray", "optuna"} <= set(versions)
    config = json.loads(meta[b"hamtune.config"])
    assert config["name"] == "tiny"
    marker = json.loads((smoke["experiment"] / "hamtune.json").read_text())
    assert meta[b"hamtune.dataset_fingerprint"].decode() == marker["fingerprint"]
    assert meta[b"hamtune.split_seed"].decode() == "0"


def test_split_is_saved_lesion_clean(smoke: dict) -> None:
    split = pd.read_csv(smoke["experiment"] / "split.csv")
    assert set(split["split"]) == {"train", "val", "test"}
    assert split.groupby("lesion_id")["split"].nunique().max() == 1


def test_cli_shows_its_progress_lines_not_rays_status_tables(smoke: dict) -> None:
    """Output that is not a terminal gets one plain line per ended trial; Ray's tables need --verbose."""
    output = smoke["result"].stdout + smoke["result"].stderr
    lines = [line for line in output.splitlines() if line.startswith("sweep: ")]
    assert [line.split(" | ")[0] for line in lines] == [
        "sweep: 1/2 trials ended, 1 running, 0 pending", "sweep: 2/2 trials ended, 0 running, 0 pending"]
    assert "about" in lines[0] and "left" in lines[0] and "elapsed" in lines[1]
    assert "Trial status" not in output


def test_cli_prints_top_trials_and_table_paths(smoke: dict) -> None:
    out = smoke["result"].stdout
    journal = smoke["experiment"] / "optuna.journal"
    assert (f"Optuna study 'tiny' in {journal}; watch it live with `optuna-dashboard --host 127.0.0.1 "
            f"{journal}` (pip install 'hamtune[dashboard]')") in out
    assert "top trials by val_macro_f1" in out
    assert str(smoke["experiment"] / "trials.parquet") in out
    assert str(smoke["experiment"] / "epochs.parquet") in out


def test_existing_experiment_is_refused_without_resume(smoke: dict, hamtune_cache: Path) -> None:
    before = (smoke["experiment"] / "trials.parquet").stat().st_mtime_ns
    result = run_hamtune(["sweep", str(smoke["file"])], hamtune_cache, smoke["root"], timeout=120)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--resume" in result.stderr
    assert "Traceback" not in result.stderr
    assert (smoke["experiment"] / "trials.parquet").stat().st_mtime_ns == before


def test_resume_refuses_a_directory_that_is_not_an_experiment(tmp_path: Path, hamtune_cache: Path) -> None:
    (tmp_path / "runs" / "foreign").mkdir(parents=True)
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(tiny_sweep_yaml("foreign", tmp_path / "runs"))
    result = run_hamtune(["sweep", str(sweep_file), "--resume"], hamtune_cache, tmp_path, timeout=120)
    assert result.returncode == 2
    assert "not a hamtune experiment" in result.stderr and "Traceback" not in result.stderr


def test_local_weights_files_are_loaded_per_model_before_any_trial(tmp_path: Path, hamtune_cache: Path) -> None:
    """Offline sweeps over both backbones: one weights file per model, each checked up front."""
    import yaml

    for model in ("convnext_small", "densenet121"):  # the suite's backbone weights files, under the names users give
        (tmp_path / f"{model}.weights.h5").symlink_to(backbone_weights_file(model))
    settings = yaml.safe_load(tiny_sweep_yaml("offline", tmp_path / "runs"))
    sweep_file = tmp_path / "offline.yaml"

    def dry_run(weights: object) -> subprocess.CompletedProcess:
        settings["training"]["weights"] = weights
        sweep_file.write_text(yaml.safe_dump(settings))
        return run_hamtune(["sweep", str(sweep_file), "--dry-run"], hamtune_cache, tmp_path, timeout=300)

    ok = dry_run({m: f"{m}.weights.h5" for m in ("convnext_small", "densenet121")})
    assert ok.returncode == 0, ok.stderr[-3000:]
    swapped = dry_run({"convnext_small": "densenet121.weights.h5", "densenet121": "convnext_small.weights.h5"})
    assert swapped.returncode == 2 and "Traceback" not in swapped.stderr, swapped.stderr[-3000:]
    assert ("offline.yaml: training.weights.convnext_small: weights file "
            f"'{tmp_path / 'densenet121.weights.h5'}' does not fit backbone convnext_small") in swapped.stderr
    shared = dry_run("densenet121.weights.h5")
    assert shared.returncode == 2, shared.stderr[-3000:]
    assert ("a file holds one backbone's weights: give each model its own, training.weights: "
            "{convnext_small: FILE, densenet121: FILE}") in shared.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, hamtune_cache: Path) -> None:
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(tiny_sweep_yaml("dry", tmp_path / "runs", scratch=True))
    # Without --address the sweep starts its own Ray instance: it never joins another cluster
    # (an unreachable RAY_ADDRESS here, or one left by `ray start`).
    result = run_hamtune(["sweep", str(sweep_file), "--dry-run"], hamtune_cache, tmp_path, timeout=300,
                         RAY_ADDRESS="127.0.0.1:9")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for expected in ("resolved config:", "search space:", "learning_rate",
                     "densenet121: not searched (from scratch: all 58 blocks train)",
                     "training mode per model:", "densenet121: from scratch (weights none)", "augmentation flips",
                     "convnext_small: 1 CPU, 0 GPU -> 2 at once", "train_images", "fingerprint",
                     "warm trials: on: a worker keeps its built, compiled model",
                     "convnext_small and densenet121 trials share workers (same resources)"):
        assert expected in out, expected
    assert not (tmp_path / "runs" / "dry").exists()


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, "convnext_small and densenet121 trials share workers (same resources)"),
    ({"resources": {"per_model": {"convnext_small": {"cpus": 4}}}},
     "trials of models with different resources never share a worker: convnext_small (4 CPU, 0 GPU); "
     "densenet121 (2 CPU, 0 GPU)"),
    ({"space": {"models": ["densenet121"]}}, "the first trial on each worker builds and traces"),
    ({"training": {"warm_trials": False}}, "off: every trial starts a new worker"),
])
def test_the_dry_run_says_what_a_worker_reuses(settings: dict, expected: str) -> None:
    from hamtune.config import parse_sweep
    from hamtune.sweep.run import describe_warm

    assert expected in describe_warm(parse_sweep({"name": "w", **settings}))


def test_optuna_dashboard_serves_the_finished_sweeps_study_on_loopback_only(smoke: dict) -> None:
    """The real optuna-dashboard server, started as hamtune's start-up line says, reads the
    finished sweep's journal: its HTTP API returns the study and every trial with its Ray trial
    id, state and per-epoch values, and the server listens on 127.0.0.1 and nowhere else."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    journal = smoke["experiment"] / "optuna.journal"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("optuna-dashboard")), "--host", "127.0.0.1", "--port", str(port),
         "--quiet", str(journal)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    try:
        deadline = time.monotonic() + 60
        while (studies := get("/api/studies")) is None:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.5)
        [summary] = studies["study_summaries"]
        assert summary["study_name"] == "tiny"
        detail = get(f"/api/studies/{summary['study_id']}")
        tables = pd.read_parquet(smoke["experiment"] / "trials.parquet")
        served = {next(a["value"] for a in t["user_attrs"] if a["key"] == "ray_trial_id"): t for t in detail["trials"]}
        assert sorted(served) == sorted(tables["trial_id"])
        assert {t["state"] for t in served.values()} == {"Complete"}
        assert all([v["step"] for v in t["intermediate_values"]] == [1, 2] for t in served.values())
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def listening_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses with a socket listening on `port`, from Linux's /proc/net/tcp{,6}."""
    import ipaddress

    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, width // 2, 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


def test_each_trial_leaves_tensorboard_event_files_with_its_per_epoch_metrics(smoke: dict) -> None:
    """Ray Tune writes TensorBoard events for every trial (`tensorboard --logdir EXPERIMENT`): read
    back with TensorFlow's own event reader, they hold each epoch's val macro F1 as the tables do."""
    import tensorflow as tf

    epochs = pd.read_parquet(smoke["experiment"] / "epochs.parquet")
    for trial_id, rows in epochs.groupby("trial_id"):
        [directory] = smoke["experiment"].glob(f"trial_{trial_id}*")
        logged = {}
        for events in directory.glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    if value.tag == "ray/tune/val_macro_f1":
                        logged[event.step] = value.simple_value
        expected = rows.sort_values("epoch")["val_macro_f1"].tolist()
        assert sorted(logged) == list(range(1, len(expected) + 1))
        assert [logged[step] for step in sorted(logged)] == pytest.approx(expected, abs=1e-6)


def test_a_second_sweep_warm_starts_from_the_finished_one(smoke: dict) -> None:
    """The smoke sweep's trials, read back through `search.warm_start`, fit the same space as
    finished (COMPLETE) trials of the same problem (same data, image size and training modes)."""
    import optuna
    import yaml

    from hamtune.config import parse_sweep
    from hamtune.search.warmstart import warm_start

    settings = yaml.safe_load(smoke["file"].read_text())
    settings["name"] = "again"
    settings["search"]["warm_start"] = [str(smoke["experiment"])]
    again = parse_sweep(settings, source="again.yaml")
    fingerprint = json.loads((smoke["experiment"] / "hamtune.json").read_text())["fingerprint"]
    warm = warm_start(again, fingerprint)
    assert (len(warm.trials), warm.skipped) == (2, 0)
    assert {t.state for t in warm.trials} == {optuna.trial.TrialState.COMPLETE}
    scores = pd.read_parquet(smoke["experiment"] / "trials.parquet")["val_macro_f1"]
    assert sorted(t.value for t in warm.trials) == pytest.approx(sorted(scores))


def test_mlflow_holds_a_run_per_trial_with_its_parameters_and_per_epoch_metrics(smoke: dict) -> None:
    """`tracking: {mlflow: sqlite:///...}`: read back with MLflow's own client from the real store."""
    import mlflow

    client = mlflow.MlflowClient(smoke["mlflow"])
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    trials = pd.read_parquet(smoke["experiment"] / "trials.parquet")
    epochs = pd.read_parquet(smoke["experiment"] / "epochs.parquet")
    assert len(runs) == len(trials) and {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        [row] = trials[trials["model"] == run.data.params["model"]].to_dict("records")  # one trial per model
        for key in ("learning_rate", "dropout", "class_weight_power"):
            assert float(run.data.params[key]) == pytest.approx(row[key]), key
        history = client.get_metric_history(run.info.run_id, "val_macro_f1")
        expected = epochs[epochs["trial_id"] == row["trial_id"]].sort_values("epoch")["val_macro_f1"].tolist()
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (step, pytest.approx(value)) for step, value in enumerate(expected, start=1)]
