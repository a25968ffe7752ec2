"""Do common starting points rank configurations more stably? The same configurations trained
under two sweep seeds, with a common start and with a start per trial, on real HAM10000.

    python benchmarks/common_start.py [--data ../shared/data/ham10000-dev] [--seeds 0 1 2]
        [--configs 8] [--epochs 3] [--schedule-epochs 12] [--size 32] [--out DIR]

`--configs` configurations are drawn once (uniform random over `sweeps/dev.yaml`'s space, from
`--config-seed`, whatever the sweep seed), DenseNet121 from scratch at `--size` px with hamtune's
training defaults (cosine schedule, weight decay 0.05). Each is trained for the first `--epochs`
epochs of a `--schedule-epochs`-epoch trial (by default ASHA's first rung in the search
benchmark's sweep: epoch 3 of 12, the rate still near its peak) on the development set's
lesion-grouped train split and scored on its whole val split after every epoch, once per sweep
seed in `--seeds` and arm:

  common     `training.seed_per_trial: false` (the default): every configuration starts from the
             weights and batch order the sweep seed gives the backbone;
  per-trial  `training.seed_per_trial: true`: each configuration's start also depends on its
             hyperparameters (hamtune before 0.2.0).

A ranking is stable when the same configurations come out in the same order under another sweep
seed, which is what ASHA needs of a rung and TPE of its observations. Reported per arm, for each
pair of seeds: Spearman's rho between the configurations' best val macro F1 under one seed and
under the other, and the mean over pairs. Each configuration
trains through hamtune's own code (`trial_seed`, `build_trial_model`, `train_epochs`, the trials'
predictor) on one warm model, in this process, on both CPUs.

Each (seed, arm) writes `--out/<seed>-<arm>.json` as it finishes and a second run skips those
already there. Budget on 2 cores at the defaults: about 7 minutes per (seed, arm) idle.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine  # benchmarks/machine.py
from devset import DEV_DATA, dev_sweep  # benchmarks/devset.py
from parts import run_parts  # benchmarks/parts.py

REPO = Path(__file__).resolve().parents[1]
ARMS = ("common", "per-trial")


def sweep_config(arm: str, args: argparse.Namespace) -> Any:
    """The arm's settings: the two arms differ only in `seed_per_trial`."""
    return dev_sweep(f"common-start-{arm}", args, {"epochs": args.schedule_epochs, "patience": args.schedule_epochs,
                                                   "seed_per_trial": arm == "per-trial"})


def configurations(space: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` points drawn uniformly from `space` by Optuna's seeded random sampler, as a trial gets them."""
    import optuna

    from hamtune.search.space import define_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(count):
        trial = study.ask()
        extras = define_space(trial, space)
        points.append({**trial.params, **extras})
    return points


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from hamtune.data.pipeline import make_dataset
    from hamtune.data.prepared import prepare_data
    from hamtune.metrics import compute_metrics
    from hamtune.training.trial import build_trial_model, train_epochs, trial_seed

    sweep = sweep_config(arm, args)
    data = prepare_data(sweep.data)
    train_pos, val_pos = data.positions("train"), data.positions("val")
    y_train, y_val = data.labels(train_pos), data.labels(val_pos)
    rows = []
    for number, params in enumerate(configurations(sweep.space, args.configs, args.config_seed)):
        start = trial_seed(seed, params, sweep.training)
        model, images = build_trial_model(params, sweep.training, data, cpus=2, use_gpu=False, seed=start)
        val_ds = make_dataset(images, val_pos, y_val, batch_size=32)
        scores = []
        for _ in train_epochs(model, params, sweep.training, images, train_pos, y_train, start, stop=args.epochs):
            scores.append(compute_metrics(y_val, model.predictor(val_ds))["macro_f1"])
        rows.append({"config": number, "params": params, "trial_seed": start, "val_macro_f1": scores,
                     "best": max(scores)})
        print(f"  seed {seed} {arm} config {number} (lr {params['learning_rate']:.2e}, dropout "
              f"{params['dropout']:.2f}, cw {params['class_weight_power']:.2f}, start {start}): val macro F1 "
              f"{np.round(scores, 3).tolist()}", flush=True)
    return {"configs": rows, "epochs": args.epochs, "schedule_epochs": args.schedule_epochs, "train_images": len(train_pos), "val_images": len(val_pos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sweep seeds")
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--config-seed", type=int, default=0, help="seeds the draw of the configurations")
    parser.add_argument("--epochs", type=int, default=3, help="epochs trained and scored per configuration")
    parser.add_argument("--schedule-epochs", type=int, default=12, help="the trial's epochs, over which the rate decays")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hamtune")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"common-start-{datetime.date.today()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    run_parts(args.out, args.seeds, ARMS, lambda arm, seed, _: run_arm(arm, seed, args),
              lambda result: "best val macro F1 per configuration "
                             f"{np.round([row['best'] for row in result['configs']], 3).tolist()}")
    summarize(args.out)


def summarize(out: Path) -> None:
    """The table of benchmarks/README.md, from every finished (seed, arm) in `out`."""
    from hamtune.results.fidelity import spearman  # what `hamtune analyze` ranks rungs with

    best: dict[str, dict[int, list[float]]] = {}
    for path in sorted(out.glob("*-*.json")):
        result = json.loads(path.read_text())
        best.setdefault(result["arm"], {})[result["seed"]] = [row["best"] for row in result["configs"]]
    lines = ["| arm | seed pair | Spearman's rho of the configurations' best val macro F1 | "
             "mean spread of a configuration's best across seeds (std) |", "|---|---|---|---|"]
    for arm in ARMS:
        runs = best.get(arm, {})
        pairs = list(itertools.combinations(sorted(runs), 2))
        rhos = [spearman(runs[a], runs[b]) for a, b in pairs]
        spread = float(np.mean(np.std(np.array([runs[s] for s in sorted(runs)]), axis=0))) if runs else float("nan")
        for (a, b), rho in zip(pairs, rhos):
            lines.append(f"| {arm} | {a}-{b} | {rho:.2f} | |")
        if rhos:
            lines.append(f"| **{arm}** | mean of {len(rhos)} | **{np.mean(rhos):.2f}** | {spread:.3f} |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    print(table, flush=True)


if __name__ == "__main__":
    main()
