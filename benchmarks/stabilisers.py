"""How much each stabiliser steadies a trial's score, on real HAM10000: side by side, per seed.

    python benchmarks/stabilisers.py [--data ../shared/data/ham10000-dev] [--seeds 0 1 2]
        [--epochs 12] [--size 32] [--weight-decay 0.05] [--out DIR]

The recipe (Adam at 1e-3, dropout 0.3, class-weight power 1, DenseNet121 from scratch at
`--size` px, batch 32) trained for `--epochs` epochs on the development set's lesion-grouped
train split, scored on its whole val split after every epoch, in four arms that differ only in
the optimizer's settings (`hamtune.training.optimizer`):

  recipe        a constant learning rate, no weight decay (hamtune before the stabilisers);
  cosine        `lr_schedule: cosine`: one epoch of linear warm-up, then a cosine decay to zero;
  adamw         `weight_decay: --weight-decay` (decoupled, as AdamW);
  cosine+adamw  both.

Every arm is scored twice per epoch, on the trained weights and on their moving average
(`weight_averaging`: the average is tracked in every arm and changes nothing in training), so the
four runs give eight variants. Each arm trains through hamtune's own code (`build_trial_model`,
`train_epochs`, the trials' predictor) from the same starting weights and batch order per seed
(one warm model, reset per arm).

Reported per variant, mean and spread over seeds: the best val macro F1, and the **swing**: the
median absolute change of val macro F1 between consecutive epochs in the second half of the run.
Target (the warm-trials issue): swing halved against the recipe's.

Each (seed, arm) writes `--out/<seed>-<arm>.json` as it finishes and a second run skips those
already there. Budget per seed on 2 cores: 4 x 12 epochs, about 15-20 minutes idle.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine  # benchmarks/machine.py
from devset import DEV_DATA, dev_sweep  # benchmarks/devset.py
from parts import run_parts  # benchmarks/parts.py

REPO = Path(__file__).resolve().parents[1]
RECIPE = {"model": "densenet121", "learning_rate": 1e-3, "dropout": 0.3, "unfreeze_depth": 0,
          "class_weight_power": 1.0}
ARMS = ("recipe", "cosine", "adamw", "cosine+adamw")


def training_settings(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"lr_schedule": "cosine" if "cosine" in arm else "constant",
            "weight_decay": args.weight_decay if "adamw" in arm else 0.0}


def sweep_config(arm: str, args: argparse.Namespace) -> Any:
    """The arm's settings: the recipe's, with the arm's schedule and weight decay."""
    return dev_sweep(f"stabilisers-{arm.replace('+', '-')}", args,
                     {"epochs": args.epochs, "patience": args.epochs, **training_settings(arm, args)},
                     space={"models": ["densenet121"]})


def swing(scores: list[float]) -> float:
    """Median absolute change between consecutive epochs of the run's second half."""
    half = scores[len(scores) // 2:]
    return float(np.median(np.abs(np.diff(half))))


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from hamtune.data.pipeline import make_dataset
    from hamtune.data.prepared import prepare_data
    from hamtune.metrics import compute_metrics
    from hamtune.training.trial import build_trial_model, train_epochs

    sweep = sweep_config(arm, args)
    data = prepare_data(sweep.data)
    model, images = build_trial_model(RECIPE, sweep.training, data, cpus=2, use_gpu=False, seed=seed)
    train_pos, val_pos = data.positions("train"), data.positions("val")
    y_val = data.labels(val_pos)
    val_ds = make_dataset(images, val_pos, y_val, batch_size=32)
    rows = []
    for result in train_epochs(model, RECIPE, sweep.training, images, train_pos, data.labels(train_pos), seed):
        row = {"epoch": result.epoch, "train_loss": result.train_loss, "seconds": result.seconds}
        for name, averaged in (("trained", False), ("averaged", True)):
            with model.evaluated(averaged):
                row[name] = compute_metrics(y_val, model.predictor(val_ds))["macro_f1"]
        rows.append(row)
        print(f"  seed {seed} {arm} epoch {result.epoch}: loss {result.train_loss:.3f}, "
              f"val macro F1 {row['trained']:.3f} (averaged {row['averaged']:.3f}), {result.seconds:.0f} s", flush=True)
    return {"settings": training_settings(arm, args), "recipe": RECIPE,
            "train_images": len(train_pos), "val_images": len(val_pos), "machine": machine(), "epochs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hamtune")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"stabilisers-{datetime.date.today()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    run_parts(args.out, args.seeds, ARMS, lambda arm, seed, _: run_arm(arm, seed, args))
    summarize(args.out)


def summarize(out: Path) -> None:
    """The table of benchmarks/README.md, from every finished (seed, arm) in `out`."""
    by_variant: dict[str, dict[int, list[float]]] = {}
    for path in sorted(out.glob("*-*.json")):
        result = json.loads(path.read_text())
        for weights in ("trained", "averaged"):
            variant = result["arm"] + (" + averaging" if weights == "averaged" else "")
            by_variant.setdefault(variant, {})[result["seed"]] = [row[weights] for row in result["epochs"]]
    base = by_variant.get("recipe", {})
    lines = ["| variant | seeds | best val macro F1 (mean, range) | swing (mean, range) | swing / recipe's | "
             "best - recipe's (mean) |", "|---|---|---|---|---|---|"]
    for variant, runs in by_variant.items():
        seeds = sorted(runs)
        best = [max(runs[s]) for s in seeds]
        swings = [swing(runs[s]) for s in seeds]
        paired = [s for s in seeds if s in base]
        ratio = np.mean([swing(runs[s]) / swing(base[s]) for s in paired]) if paired else float("nan")
        gain = np.mean([max(runs[s]) - max(base[s]) for s in paired]) if paired else float("nan")
        lines.append(f"| {variant} | {len(seeds)} | {np.mean(best):.3f} ({min(best):.3f}-{max(best):.3f}) | "
                     f"{np.mean(swings):.3f} ({min(swings):.3f}-{max(swings):.3f}) | {ratio:.2f} | {gain:+.3f} |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    print(table, flush=True)


if __name__ == "__main__":
    main()
