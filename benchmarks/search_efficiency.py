"""Is a hamtune sweep worth running? Its search against the fixed recipe and against random search,
on real HAM10000, side by side per seed.

    python benchmarks/search_efficiency.py [--data ../shared/data/ham10000-dev] [--seeds 0 1 2]
        [--trials 10] [--epochs 12] [--size 32] [--out DIR]

Everything is DenseNet121 trained from scratch (`training.weights: none`) at `--size` px on the
real development set, one lesion-grouped split (split seed 0), with hamtune's training defaults
(the stabilisers included: the arms differ by how configurations are chosen, nothing else). Each
`--seeds` value seeds the searches and the trials' common starting weights. Per seed:

  sweep         a hamtune sweep as `sweeps/dev.yaml` runs one, without the recipe among its first
                points: `--trials` TPE trials, ASHA (grace period 3, reduction factor 2, at most
                `--epochs` per trial), patience 4, 2 trials at a time on 1 CPU each;
  recipe        the notebook's recipe (Adam 1e-3, dropout 0.3, class-weight power 1) as one
                hamtune trial of `--epochs` epochs, patience 4, on both CPUs;
  random        uniform random search, no scheduler, no early stopping, `--epochs` per trial,
                as many trials as give the sweep's epoch count (rounded up);
  refit-sweep,  `hamtune refit` of the sweep's best trial and of the recipe on train+val, for
  refit-recipe  their best epoch counts, scored once on test with lesion-bootstrap intervals.

Two tables (the warm-trials issue's (c) and (d)):

  (c) the sweep's best val macro F1 and its refit's test macro F1 against the recipe's.
      Targets: val best >= the recipe's + 0.05 on average and >= 0.45; test above the recipe's.
  (d) cumulative epochs (in report order) TPE+ASHA needed to reach random search's final best,
      as a share of random's epochs. Target: <= 50 % on average.

Each (seed, arm) writes `--out/<seed>-<arm>.json` as soon as it finishes; a second run skips those
already there, so seeds can be run in parts. Budget per seed here (2 cores): sweep about 17 min,
random about the same, recipe about 5, each refit about 5: about 50 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine  # benchmarks/machine.py
from devset import DEV_DATA, dev_sweep  # benchmarks/devset.py
from parts import run_parts  # benchmarks/parts.py

REPO = Path(__file__).resolve().parents[1]
RECIPE = {"model": "densenet121", "learning_rate": 1.0e-3, "dropout": 0.3, "class_weight_power": 1.0}
ARMS = ("sweep", "recipe", "random", "refit-sweep", "refit-recipe")
PATIENCE = 4


def sweep_config(arm: str, seed: int, args: argparse.Namespace, trials: int) -> Any:
    """The arm's sweep."""
    search: dict[str, Any] = {"seed": seed, "trials": trials, "max_concurrent": 2}
    scheduler: Any = "none"
    patience, cpus = PATIENCE, 1
    if arm == "sweep":
        search["sampler"] = "tpe"
        scheduler = {"type": "asha", "grace_period": min(3, args.epochs), "reduction_factor": 2}
    elif arm == "random":
        search["sampler"] = "random"
        patience = args.epochs  # no early stopping of any kind
    else:  # recipe: one trial, the notebook's settings
        search.update(max_concurrent=1, points_to_evaluate=[RECIPE])
        cpus = 2
    return dev_sweep(f"{arm}-{seed}", args, {"epochs": args.epochs, "patience": patience}, search=search,
                     scheduler=scheduler, resources={"cpus_per_trial": cpus}, storage=str(args.out / "runs"),
                     failures={"max_retries": 1})


def curve(experiment: Path, started: float) -> list[dict[str, Any]]:
    """Every reported epoch of a sweep in report order, with seconds since the start."""
    rows = []
    for result in experiment.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "epoch" in row:
                rows.append({"time": row["timestamp"], "trial": result.parent.name, "epoch": row["epoch"],
                             "f1": row["val_macro_f1"]})
    rows.sort(key=lambda row: (row["time"], row["trial"]))
    for row in rows:
        row["seconds"] = row.pop("time") - started
    return rows


def run_search(arm: str, seed: int, args: argparse.Namespace, trials: int) -> dict[str, Any]:
    import ray

    from hamtune.sweep.run import run_sweep

    sweep = sweep_config(arm, seed, args, trials)
    started = time.time()
    try:
        run_sweep(sweep, echo=lambda *_: None)
    finally:
        ray.shutdown()  # run_sweep leaves its local Ray instance up; the next arm starts its own
    rows = curve(args.out / "runs" / sweep.name, started)
    return {"experiment": str(args.out / "runs" / sweep.name), "trials": trials, "wall_s": time.time() - started,
            "epochs": rows, "best": max(row["f1"] for row in rows)}


def run_refit(experiment: str) -> dict[str, Any]:
    from hamtune.evaluation.refit import refit

    started = time.time()
    result = refit(experiment, cpus=2, out=f"{experiment}/refit-{int(started)}")  # new: a rerun never meets a half-written one
    report = result.report
    return {"test_macro_f1": report["test"]["macro_f1"], "interval": report["confidence_intervals"]["macro_f1"],
            "test_balanced_accuracy": report["test"]["balanced_accuracy"], "epochs": result.epochs,
            "params": report["params"], "wall_s": time.time() - started}


def run_arm(arm: str, seed: int, args: argparse.Namespace, done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if arm == "sweep":
        return run_search(arm, seed, args, args.trials)
    if arm == "recipe":
        return run_search(arm, seed, args, 1)
    if arm == "random":  # the sweep's epoch count, in whole trials
        return run_search(arm, seed, args, math.ceil(len(done["sweep"]["epochs"]) / args.epochs))
    return run_refit(done[arm.removeprefix("refit-")]["experiment"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10, help="trials of the TPE + ASHA sweep")
    parser.add_argument("--epochs", type=int, default=12, help="most epochs per trial")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hamtune")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"search-{datetime.date.today()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    run_parts(args.out, args.seeds, ARMS, lambda arm, seed, done: run_arm(arm, seed, args, done),
              lambda result: (f"best val macro F1 {result['best']:.4f}, {len(result['epochs'])} epochs"
                              if "best" in result else f"test macro F1 {result['test_macro_f1']:.4f}")
              + f", {result['wall_s'] / 60:.1f} min")
    summarize(args.out)


def epochs_to_reach(rows: list[dict[str, Any]], target: float) -> float:
    """Cumulative epochs until the best-so-far first reaches `target` (NaN if it never does)."""
    best = np.maximum.accumulate([row["f1"] for row in rows])
    reached = np.flatnonzero(best >= target - 1e-12)
    return float(reached[0] + 1) if len(reached) else math.nan


def summarize(out: Path) -> None:
    """Tables (c) and (d) of benchmarks/README.md, from every finished seed in `out`."""
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for path in sorted(out.glob("*-*.json")):
        result = json.loads(path.read_text())
        by_seed.setdefault(result["seed"], {})[result["arm"]] = result
    c_rows, d_rows = [], []
    for seed, arms in sorted(by_seed.items()):
        if {"sweep", "recipe", "refit-sweep", "refit-recipe"} <= set(arms):
            sweep, recipe = arms["refit-sweep"], arms["refit-recipe"]
            c_rows.append({
                "seed": seed, "sweep min": arms["sweep"]["wall_s"] / 60, "recipe min": arms["recipe"]["wall_s"] / 60,
                "sweep val best": arms["sweep"]["best"], "recipe val best": arms["recipe"]["best"],
                "val gain": arms["sweep"]["best"] - arms["recipe"]["best"],
                "sweep test": f"{sweep['test_macro_f1']:.3f} [{sweep['interval']['low']:.3f}, "
                              f"{sweep['interval']['high']:.3f}]",
                "recipe test": f"{recipe['test_macro_f1']:.3f} [{recipe['interval']['low']:.3f}, "
                               f"{recipe['interval']['high']:.3f}]",
                "test gain": sweep["test_macro_f1"] - recipe["test_macro_f1"],
            })
        if {"sweep", "random"} <= set(arms):
            random_rows, tpe_rows = arms["random"]["epochs"], arms["sweep"]["epochs"]
            target = max(row["f1"] for row in random_rows)
            needed = epochs_to_reach(tpe_rows, target)
            d_rows.append({"seed": seed, "random epochs": len(random_rows), "random final best": target,
                           "TPE+ASHA epochs": len(tpe_rows), "TPE+ASHA best": arms["sweep"]["best"],
                           "TPE+ASHA epochs to reach it": needed, "share": needed / len(random_rows)})
    text = []
    if c_rows:
        c = pd.DataFrame(c_rows).set_index("seed")
        text += ["(c) sweep vs recipe: val best, and refit on train+val scored on test (95 % lesion-bootstrap "
                 "interval)", c.round(3).to_string(),
                 f"mean: val gain {c['val gain'].mean():+.3f} (target >= +0.05), sweep val best "
                 f"{c['sweep val best'].mean():.3f} (target >= 0.45), test gain {c['test gain'].mean():+.3f} "
                 "(target > 0)", ""]
    if d_rows:
        d = pd.DataFrame(d_rows).set_index("seed")
        text += ["(d) TPE+ASHA vs random search without early stopping, equal epochs", d.round(3).to_string(),
                 f"mean share of random's epochs: {d['share'].mean():.2f} (target <= 0.50; NaN: "
                 "never reached)", ""]
    text += stopped_by_asha(out, sorted(by_seed))
    (out / "summary.md").write_text("\n".join(text) + "\n")
    print("\n".join(text), flush=True)


def stopped_by_asha(out: Path, seeds: list[int]) -> list[str]:
    """For (d): each random-search configuration's final best beside what the sweep did with the
    same configuration (both start from the same seeded random points), from the experiments'
    epochs tables where `out/runs` still holds them."""
    from hamtune.keys import FLOAT_HYPERPARAMETERS
    from hamtune.store.tables import EPOCHS_FILE, read_table

    text = []
    for seed in seeds:
        paths = {arm: out / "runs" / f"{arm}-{seed}" / EPOCHS_FILE for arm in ("random", "sweep")}
        if not all(path.exists() for path in paths.values()):
            continue
        config = json.loads((paths["sweep"].parent / "config.json").read_text())
        grace, budget = config["scheduler"]["grace_period"], config["training"]["epochs"]
        trials = {}
        for arm, path in paths.items():
            epochs, _ = read_table(str(path))
            trials[arm] = epochs.sort_values(["trial_id", "epoch"]).groupby("trial_id").agg(
                **{name: (name, "first") for name in FLOAT_HYPERPARAMETERS},
                epochs=("epoch", "max"), best=("val_macro_f1", "max"), at_rung=("val_macro_f1", lambda s: s.iloc[:grace].max()))
        merged = trials["random"].round(8).merge(trials["sweep"].round(8), on=list(FLOAT_HYPERPARAMETERS),
                                                  how="left", suffixes=(" random", " sweep"))
        merged = merged.sort_values("best random", ascending=False)
        merged = merged.assign(learning_rate=merged["learning_rate"].map("{:.3g}".format)).round(4)
        text += [f"seed {seed}: random search's configurations (best over {budget} epochs, and over the first "
                 f"{grace}, ASHA's first rung: at_rung), "
                 "beside the sweep's run of the same configuration (NaN: the sweep did not draw it)",
                 merged.to_string(index=False), ""]
    return text


if __name__ == "__main__":
    main()
