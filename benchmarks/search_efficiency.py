"""Search-efficiency benchmark: TPE + ASHA against random search without early stopping.

    python benchmarks/search_efficiency.py [--seeds 0 1 2] [--random-trials 4] [--tpe-trials 8]
                                           [--epochs 3] [--images 140] [--models densenet121]
                                           [--weights densenet121=densenet121_notop.h5]

For each seed, two real hamtune sweeps (`hamtune.sweep.run_sweep`, synthetic data, the smoke
sweep's space restricted to `--models`, random-init backbones unless `--weights` gives local
weights files) on this machine:

  random   Optuna's RandomSampler, no scheduler: every trial runs all `--epochs`;
  TPE+ASHA hamtune's own searcher (seeded multivariate TPE, `hamtune.space.make_sampler`) and
           ASHA (grace period 1, reduction factor 2).

No `points_to_evaluate` in either arm, so both start from their sampler. Each finished epoch is
one unit of budget; from Tune's per-trial result files, in report order, the benchmark tracks
the best validation macro F1 against the cumulative number of epochs, and reports how many
epochs TPE+ASHA needed to reach the random arm's final best (target of issue 8: at most half
of the random arm's epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"


def curve(experiment: Path) -> pd.DataFrame:
    """Every reported epoch of a sweep in report order: cumulative epochs and best-so-far F1."""
    rows = []
    for result in experiment.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "epoch" in row:
                rows.append({"time": row["timestamp"], "trial": result.parent.name,
                             "f1": row["val_macro_f1"]})
    frame = pd.DataFrame(rows).sort_values(["time", "trial"], kind="stable").reset_index(drop=True)
    frame["epochs"] = range(1, len(frame) + 1)
    frame["best"] = frame["f1"].cummax()
    return frame


def run_arm(arm: str, seed: int, args: argparse.Namespace, storage: Path) -> pd.DataFrame:
    import optuna
    import ray

    import hamtune.sweep
    from hamtune.config import load_sweep
    from hamtune.sweep import run_sweep

    base = load_sweep(SMOKE)
    random = arm == "random"
    sweep = dataclasses.replace(
        base,
        name=f"{arm}-{seed}",
        storage=str(storage),
        data=dataclasses.replace(
            base.data, image_size=args.size,
            synthetic=dataclasses.replace(base.data.synthetic, images=args.images),
        ),
        space=dataclasses.replace(base.space, models=tuple(args.models)),
        search=dataclasses.replace(
            base.search, seed=seed, trials=args.random_trials if random else args.tpe_trials,
            points_to_evaluate=(),
        ),
        scheduler=dataclasses.replace(
            base.scheduler, type="none" if random else "asha", grace_period=1,
            max_epochs=args.epochs, reduction_factor=2,
        ),
        training=dataclasses.replace(
            base.training, epochs=args.epochs, patience=args.epochs,
            weights={m: args.weights.get(m, base.training.weights) for m in args.models},
        ),
    )
    make_sampler = hamtune.sweep.make_sampler
    if random:
        hamtune.sweep.make_sampler = lambda s: optuna.samplers.RandomSampler(seed=s)
    try:
        run_sweep(sweep, echo=lambda *_: None)
    finally:
        hamtune.sweep.make_sampler = make_sampler
        ray.shutdown()  # run_sweep leaves its local Ray instance up; the next arm starts its own
    return curve(storage / sweep.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--random-trials", type=int, default=4)
    parser.add_argument("--tpe-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=140)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["densenet121"])
    parser.add_argument("--weights", nargs="+", default=[], metavar="MODEL=FILE",
                        help="local ImageNet weights per model (random init without): at random init every "
                             "configuration scores near chance, so there is nothing for a search to find")
    args = parser.parse_args(argv)
    args.weights = dict(item.split("=", 1) for item in args.weights)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    rows = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="hamtune-search-") as scratch:
        for seed in args.seeds:
            random = run_arm("random", seed, args, Path(scratch))
            tpe = run_arm("tpe_asha", seed, args, Path(scratch))
            loads.append(os.getloadavg()[0])
            target = random["best"].iloc[-1]
            reached = tpe[tpe["best"] >= target]
            budget = len(random)
            rows[seed] = {
                "random: epochs": budget,
                "random: final best F1": target,
                "TPE+ASHA: epochs run": len(tpe),
                "TPE+ASHA: best F1 within random's epochs": tpe["best"].iloc[: budget].max(),
                "TPE+ASHA: epochs to reach random's best":
                    reached["epochs"].iloc[0] if len(reached) else float("nan"),
            }
            print(f"seed {seed}: {rows[seed]}", flush=True)
    table = pd.DataFrame(rows).T
    table.index.name = "seed"
    table["ratio (<= 0.5 meets the target)"] = (
        table["TPE+ASHA: epochs to reach random's best"] / table["random: epochs"]
    )
    print(f"\n{', '.join(args.models)}, {args.size} px, {args.images} synthetic images, up to "
          f"{args.epochs} epochs per trial; load average (1 min) {min(loads):.2f}-{max(loads):.2f}\n")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
