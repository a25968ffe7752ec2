"""Warm trials against cold ones on real HAM10000: the same sweep, side by side, per seed.

    python benchmarks/warm_trials.py [--data ../shared/data/ham10000-dev] [--seeds 0 1 2]
        [--trials 8] [--epochs 3] [--size 32] [--concurrent 2] [--out DIR]

For each seed, two hamtune sweeps of the same `--trials` configurations (random search seeded by
the seed, no scheduler, so both arms train exactly the same configurations for `--epochs` epochs
each), DenseNet121 from scratch at `--size` px on the real development set, `--concurrent`
trials at a time with 1 CPU each:

  cold  `training.warm_trials: false`: every trial starts a new Ray worker, builds its model and
        traces its training step (hamtune before warm trials);
  warm  `training.warm_trials: true` (the default): a worker keeps its compiled model for its
        next trial.

Reported per arm: the sweep's wall time, and per trial its first epoch's time over its steady
epochs' median (from `epochs.parquet`). Targets (the warm-trials issue): a warm trial's first
epoch <= 1.3x a steady epoch, and the warm sweep's wall time <= 0.6x the cold one's.

Each (seed, arm) writes its result to `--out/<seed>-<arm>.json` as soon as it finishes, and a
second run skips the ones already there: the benchmark can be run in parts. Budget per seed at
the defaults on 2 cores: about 20 minutes (cold about 12, warm about 8).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine  # benchmarks/machine.py
from devset import DEV_DATA, dev_sweep  # benchmarks/devset.py
from parts import run_parts  # benchmarks/parts.py

REPO = Path(__file__).resolve().parents[1]
ARMS = ("cold", "warm")


def sweep_config(arm: str, seed: int, args: argparse.Namespace, storage: Path) -> Any:
    """The arm's sweep: the two arms differ only in `warm_trials`."""
    return dev_sweep(f"{arm}-{seed}", args, {"epochs": args.epochs, "patience": args.epochs,
                                             "warm_trials": arm == "warm"},
                     search={"seed": seed, "trials": args.trials, "max_concurrent": args.concurrent,
                             "sampler": "random"},
                     scheduler="none", resources={"cpus_per_trial": 1}, storage=str(storage),
                     failures={"max_retries": 0})


def per_trial(epochs: pd.DataFrame) -> pd.DataFrame:
    """Each trial's first-epoch and median steady-epoch seconds (train_seconds is cumulative)."""
    rows = []
    for trial_id, group in epochs.sort_values("epoch").groupby("trial_id"):
        seconds = np.diff(np.concatenate([[0.0], group["train_seconds"].to_numpy()]))
        steady = float(np.median(seconds[1:])) if len(seconds) > 1 else float("nan")
        rows.append({"trial_id": trial_id, "learning_rate": group["learning_rate"].iloc[0],
                     "dropout": group["dropout"].iloc[0], "first_s": seconds[0], "steady_s": steady,
                     "first_over_steady": seconds[0] / steady, "best_val_macro_f1": group["val_macro_f1"].max()})
    return pd.DataFrame(rows)


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from hamtune.store.tables import EPOCHS_FILE, read_table
    from hamtune.sweep.run import run_sweep

    storage = args.out / "runs"
    sweep = sweep_config(arm, seed, args, storage)
    started = time.time()
    try:
        run_sweep(sweep, echo=lambda *_: None)
    finally:
        ray.shutdown()  # run_sweep leaves its local Ray instance up; the next arm starts its own
    wall = time.time() - started
    epochs, _ = read_table(str(storage / sweep.name / EPOCHS_FILE))
    trials = per_trial(epochs)
    return {"wall_s": wall, "concurrent": args.concurrent, "trials": trials.to_dict("records")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hamtune")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"warm-{datetime.date.today()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    run_parts(args.out, args.seeds, ARMS, lambda arm, seed, _: run_arm(arm, seed, args),
              lambda result: f"{result['wall_s']:.0f} s, first/steady epoch per trial "
                             f"{np.round([t['first_over_steady'] for t in result['trials']], 2).tolist()}")
    summarize(args.out)


def summarize(out: Path) -> None:
    """The tables of benchmarks/README.md, from every finished (seed, arm) in `out`."""
    results = [json.loads(path.read_text()) for path in sorted(out.glob("*-*.json"))]
    by_seed: dict[int, dict[str, Any]] = {}
    for result in results:
        by_seed.setdefault(result["seed"], {})[result["arm"]] = result
    lines = ["| seed | cold wall (s) | warm wall (s) | warm/cold | cold first/steady (median) | "
             "warm first/steady (median, trials after each worker's first) |", "|---|---|---|---|---|---|"]
    ratios = []
    for seed, arms in sorted(by_seed.items()):
        if set(arms) != set(ARMS):
            continue
        cold, warm = arms["cold"], arms["warm"]
        cold_ratio = np.median([t["first_over_steady"] for t in cold["trials"]])
        # The first trial on each worker builds and traces in both arms: the warm arm's claim is
        # about the trials after it. There are as many workers as trials at once, and their
        # first trials are the ones with the slowest first epochs.
        warm_ratios = sorted(t["first_over_steady"] for t in warm["trials"])
        later = warm_ratios[: len(warm_ratios) - warm["concurrent"]]
        ratios.append(warm["wall_s"] / cold["wall_s"])
        lines.append(f"| {seed} | {cold['wall_s']:.0f} | {warm['wall_s']:.0f} | {ratios[-1]:.2f} | "
                     f"{cold_ratio:.2f} | {np.median(later):.2f} (max {max(later):.2f}) |")
    if ratios:
        lines.append(f"\nwarm/cold wall time: mean {np.mean(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
                     f"over {len(ratios)} seed(s)")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    print(table, flush=True)


if __name__ == "__main__":
    main()
