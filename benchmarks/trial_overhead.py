"""Trial-overhead benchmark: where one trial's wall time goes, and what the cuts saved.

    python benchmarks/trial_overhead.py [--models convnext_small densenet121] [--sizes 32 64]
                                        [--images 140] [--epochs 4] [--warmup 2]

Each (backbone, image size) runs in a fresh Python process, as a Ray trial does, on synthetic
data (`hamtune.data.synth`, random-init backbones, the smoke sweep's training settings except
the epoch count) and times, with hamtune's own functions:

  process start     spawn to the first line of the child (Python start-up);
  imports           numpy, pandas, `import tensorflow`, hamtune, `configure_tensorflow`;
  data attach       `PreparedData.on_this_node` + `open_cache` of the cache the parent built;
  model build       `build_trial_model` (seed, cache attach again, `build_model`);
  compile           the phase switches inside `train_epochs` (freeze/unfreeze, `compile`);
  tracing           first fit of each phase minus that phase's steady (last) epoch;
  steady training   the rest of the fit time;
  evaluation        inference on the validation split: `model.predict` (before) and
                    `make_predictor` (after: one trace for both phases), plus `compute_metrics`;
  checkpoint        every weight + optimizer (before) and `save_checkpoint`, which leaves out
                    the frozen backbone weights a retry rebuilds from the seed (after);
  reporting         `ray.tune.report` of a checkpoint of each size in a real Tune trial.

Both versions of evaluation and checkpointing run in the same process on the same weights, so
"before" and "after" differ by exactly those cuts. `--epochs 4 --warmup 2` gives each phase a steady epoch to
subtract; the smoke sweep itself runs 2 epochs (one per phase).
"""

from __future__ import annotations

import time

STARTED = time.time()  # before any heavy import: the child's "process start" ends here

import argparse
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from machine import machine  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
PARAMS = {"learning_rate": 1e-3, "dropout": 0.2, "class_weight_power": 0.5, "unfreeze_depth": 1}


def child(prepared: Path, model: str, spawned: float, out: Path) -> None:
    """One trial's phases, timed; writes a JSON dict of seconds (and checkpoint bytes) to `out`."""
    times: dict[str, float] = {"process start": STARTED - spawned}
    tick = STARTED

    def lap(name: str) -> None:
        nonlocal tick
        now = time.time()
        times[name] = times.get(name, 0.0) + now - tick
        tick = now

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow  # noqa: F401

    from hamtune.data.cache import open_cache
    from hamtune.data.pipeline import make_dataset
    from hamtune.metrics import compute_metrics
    from hamtune.training.device import configure_tensorflow
    from hamtune.training.checkpoint import TrialState, save_checkpoint
    from hamtune.training.inference import make_predictor
    from hamtune.training.trial import build_trial_model, train_epochs

    data, training = pickle.loads(prepared.read_bytes())
    configure_tensorflow(1, False, training.mixed_precision)
    lap("imports (TF, hamtune)")
    data = data.on_this_node()
    open_cache(data.index, data.image_size, data.cache_dir)
    lap("data attach")
    params = {"model": model, **PARAMS}
    trial_model, images = build_trial_model(params, training, data, 1, False, seed=0)
    model_ = trial_model.model
    train_pos, val_pos = data.positions("train"), data.positions("val")
    y_train, y_val = data.labels(train_pos), data.labels(val_pos)
    val_ds = make_dataset(images, val_pos, y_val, batch_size=training.batch_size)
    predict = make_predictor(model_)
    lap("model build")

    fits: list[tuple[int, float]] = []
    state = TrialState()
    epochs = train_epochs(trial_model, params, training, images, train_pos, y_train, seed=0)
    for result in epochs:
        times["compile"] = times.get("compile", 0.0) + time.time() - tick - result.seconds
        fits.append((result.phase, result.seconds))
        tick = time.time()
        before = model_.predict(val_ds, verbose=0)
        lap("evaluation: model.predict (before)")
        proba = predict(val_ds)
        lap("evaluation: make_predictor (after)")
        np.testing.assert_allclose(proba, before, rtol=1e-4, atol=1e-5)
        metrics = {f"val_{k}": v for k, v in compute_metrics(y_val, proba).items()}
        state.record(result.epoch, metrics)
        lap("metrics")
        with tempfile.TemporaryDirectory() as directory:
            full_checkpoint(Path(directory), trial_model.compiled)
            times["checkpoint bytes before"] = directory_bytes(Path(directory))
            lap("checkpoint before")
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(Path(directory), trial_model.compiled, state, result.phase)
            times["checkpoint bytes after"] = directory_bytes(Path(directory))
            lap("checkpoint after")

    for phase in sorted({phase for phase, _ in fits}):
        seconds = [s for p, s in fits if p == phase]
        tracing = seconds[0] - seconds[-1] if len(seconds) > 1 else 0.0
        times[f"tracing phase {phase}"] = tracing
        times["steady training"] = times.get("steady training", 0.0) + sum(seconds) - tracing
    times["epochs"] = len(fits)
    times["train images/epoch"] = len(train_pos)
    times["val images"] = len(val_pos)
    times["wall"] = time.time() - spawned
    out.write_text(json.dumps(times))


def full_checkpoint(directory: Path, model: object) -> None:
    """The checkpoint as `run_trial` wrote it before the cut: every weight, frozen ones too."""
    model.save_weights(directory / "model.weights.h5")
    np.savez(directory / "optimizer.npz", *[v.numpy() for v in model.optimizer.variables])


def directory_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir())


def tune_report_seconds(checkpoint_bytes: list[int], storage: Path, reports: int = 3) -> list[float]:
    """Mean seconds of one `ray.tune.report` with a checkpoint of each size, in a real Tune run."""
    import ray
    from ray import tune

    def trainable(config: dict) -> None:
        payload = np.zeros(config["bytes"], np.uint8)
        for step in range(reports):
            with tempfile.TemporaryDirectory() as directory:
                payload.tofile(Path(directory) / "model.weights.h5")
                tick = time.perf_counter()
                tune.report({"step": step, "report_s": 0.0},
                            checkpoint=tune.Checkpoint.from_directory(directory))
                seconds = time.perf_counter() - tick
            tune.report({"step": step, "report_s": seconds})

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        grid = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"bytes": tune.grid_search([int(b) for b in checkpoint_bytes])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
        ).fit()
        by_size = {r.config["bytes"]: r.metrics_dataframe for r in grid}
    finally:
        ray.shutdown()
    return [float(by_size[int(b)].query("report_s > 0")["report_s"].mean()) for b in checkpoint_bytes]


def prepare(images: int, size: int, epochs: int, warmup: int, root: Path) -> Path:
    """The smoke sweep's data and training settings at this size, prepared once and pickled."""
    from hamtune.config import load_sweep
    from hamtune.data.cache import open_cache
    from hamtune.data.prepared import prepare_data

    sweep = load_sweep(SMOKE)
    data_config = dataclasses.replace(
        sweep.data, image_size=size, cache_dir=str(root / "cache"),
        synthetic=dataclasses.replace(sweep.data.synthetic, images=images),
    )
    training = dataclasses.replace(sweep.training, epochs=epochs, warmup_epochs=warmup, patience=epochs)
    data = prepare_data(data_config)
    open_cache(data.index, data.image_size, data.cache_dir)
    path = root / f"prepared-{size}.pkl"
    path.write_bytes(pickle.dumps((data, training)))
    return path


def breakdown(run: dict[str, float]) -> dict[str, float]:
    """Seconds per phase, with the cut phases as they were (before) and as they are (after)."""
    keys = ["process start", "imports (TF, hamtune)", "data attach", "model build", "compile",
            "tracing phase 1", "tracing phase 2", "steady training", "metrics"]
    cut = {
        f"{name} {when}": run[key.format(when=when)]
        for name, key in [("evaluation", "evaluation {when}"), ("checkpoint", "checkpoint {when}"),
                          ("reporting", "reporting {when}")]
        for when in ("before", "after")
    }
    # The child ran both versions of evaluation and checkpoint; the rest is common to both.
    common = run["wall"] - sum(run[f"{k} {w}"] for k in ("evaluation", "checkpoint")
                               for w in ("before", "after"))
    return {
        **{key: run.get(key, 0.0) for key in keys},
        **cut,
        **{f"wall {when}": common + sum(cut[f"{k} {when}"] for k in ("evaluation", "checkpoint",
                                                                     "reporting"))
           for when in ("before", "after")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["convnext_small", "densenet121"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--images", type=int, default=140, help="synthetic images (>= 140)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("PREPARED", "MODEL", "SPAWNED", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        prepared, model, spawned, out = args.child
        child(Path(prepared), model, float(spawned), Path(out))
        return

    loads = [os.getloadavg()[0]]
    runs: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hamtune-overhead-") as scratch:
        root = Path(scratch)
        for size in args.sizes:
            prepared = prepare(args.images, size, args.epochs, args.warmup, root)
            for model in args.models:
                out = root / f"{model}-{size}.json"
                command = [sys.executable, __file__, "--child", str(prepared), model,
                           repr(time.time()), str(out)]
                subprocess.run(command, check=True, cwd=REPO)
                runs[(model, size)] = json.loads(out.read_text())
                loads.append(os.getloadavg()[0])
                print(f"{model} {size}px done, load {loads[-1]:.2f}", flush=True)
        sizes = sorted({int(run[f"checkpoint bytes {when}"]) for run in runs.values()
                        for when in ("before", "after")})
        report = dict(zip(sizes, tune_report_seconds(sizes, root / "tune")))
    for run in runs.values():
        run["evaluation before"] = run.pop("evaluation: model.predict (before)")
        run["evaluation after"] = run.pop("evaluation: make_predictor (after)")
        for when in ("before", "after"):
            run[f"reporting {when}"] = report[int(run[f"checkpoint bytes {when}"])] * run["epochs"]

    table = pd.DataFrame({f"{m} {s}px": breakdown(run) for (m, s), run in runs.items()})
    first = next(iter(runs.values()))
    print(f"\none trial per column: {int(first['epochs'])} epochs ({args.warmup} head-only), "
          f"{int(first['train images/epoch'])} train / {int(first['val images'])} val images, "
          f"1 CPU thread pool share, weights none")
    print(f"machine: {machine()}, load average (1 min) during the runs: "
          f"{min(loads):.2f}-{max(loads):.2f}\n")
    print("seconds:")
    print(table.round(1).to_string())
    training = table.loc["steady training"]
    tracing = table.loc[["tracing phase 1", "tracing phase 2"]].sum()
    share = pd.DataFrame({
        "non-training % before (tracing counted as overhead)":
            100 * (1 - training / table.loc["wall before"]),
        "non-training % after (tracing counted as overhead)":
            100 * (1 - training / table.loc["wall after"]),
        "non-training % before (tracing counted as training)":
            100 * (1 - (training + tracing) / table.loc["wall before"]),
        "non-training % after (tracing counted as training)":
            100 * (1 - (training + tracing) / table.loc["wall after"]),
        "wall after / before": table.loc["wall after"] / table.loc["wall before"],
        "checkpoint MB before": [runs[key]["checkpoint bytes before"] / 1e6 for key in runs],
        "checkpoint MB after": [runs[key]["checkpoint bytes after"] / 1e6 for key in runs],
    }).T
    print()
    print(share.round(2).to_string())


if __name__ == "__main__":
    main()
