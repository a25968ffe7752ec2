"""What each step between "the sweep finished" and the final model buys, on real HAM10000.

    python benchmarks/final_model.py [EXPERIMENT] [--top 3] [--folds 3] [--address local] [--out DIR]

Without EXPERIMENT it first runs `hamtune sweep sweeps/dev-quick.yaml` (the real 4,992-image
development set, DenseNet121 from scratch at 32 px, 6 trials of at most 6 epochs). Then it runs
`hamtune evaluate EXPERIMENT --top K --folds F --ensemble --address local` with its defaults (TTA
views following the training augmentation; the runs as Ray tasks, as many at once as the sweep's
per-trial resources allow). Evaluate judges each step out of fold and keeps it only where it
helped; the benchmark records those decisions and scores every variant on the test split, side
by side and with 95 % lesion-bootstrap intervals:

  sweep's best, refit       the sweep's top trial retrained on train+val (what `hamtune refit` gives)
  CV-chosen, refit          the sweep's best unless another configuration beats it on the same
                            F grouped folds by more than the paired difference's standard error
  CV-chosen + TTA           ... averaged over the views its augmentation covers
  ... + calibration         ... temperature-scaled on out-of-fold predictions
  ensemble                  the configurations within one standard error of the best CV mean

Each row reports macro F1, balanced accuracy, melanoma sensitivity and specificity at the
threshold chosen out of fold for 0.90 sensitivity, the argmax rule's melanoma sensitivity and
specificity, and ECE. The table,
the step-by-step differences and `hamtune evaluate`'s own output go to `--out`
(default benchmarks/results/final-<date>).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from machine import machine  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "sweeps" / "dev-quick.yaml"
SHOWN = ("macro_f1", "balanced_accuracy", "mel_sensitivity", "mel_specificity", "mel_recall_argmax",
         "mel_specificity_argmax", "ece")


def _run(command: list[str], log: Path) -> float:
    """Run a hamtune command from the repository root, its output teed into `log`; returns seconds."""
    start = time.monotonic()
    with log.open("w") as stream:
        result = subprocess.run(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")
    return time.monotonic() - start


def tables(report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each variant's scores with intervals, each step's change against the row before it)."""
    rows, values = [], []
    for row in report["variants"]:
        scores = row["scores"]
        rows.append({"variant": row["variant"], **{
            name: f"{scores[name]['value']:.3f} [{scores[name]['low']:.3f}, {scores[name]['high']:.3f}]"
            for name in SHOWN}, "mel threshold": round(row["mel_threshold"], 4)})
        values.append({"variant": row["variant"], **{name: scores[name]["value"] for name in SHOWN}})
    numbers = pd.DataFrame(values).set_index("variant")
    steps = numbers.diff().iloc[1:].round(4)
    steps.index = [f"{before} -> {after}" for before, after in zip(numbers.index[:-1], numbers.index[1:])]
    return pd.DataFrame(rows), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", help="a finished experiment (default: run sweeps/dev-quick.yaml)")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--address", default="local", help="passed to hamtune evaluate (default: local, a private Ray)")
    args = parser.parse_args()
    out = args.out or REPO / "benchmarks" / "results" / f"final-{datetime.date.today().isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    hamtune = [sys.executable, "-m", "hamtune"]
    seconds = {}
    experiment = args.experiment
    if experiment is None:
        storage = out / "runs"
        seconds["sweep"] = _run([*hamtune, "sweep", str(SWEEP_FILE), "--storage", str(storage)], out / "sweep.log")
        experiment = str(storage / "dev-quick")
    final = out / "final-model"
    seconds["evaluate"] = _run([*hamtune, "evaluate", experiment, "--top", str(args.top), "--folds", str(args.folds),
                                "--ensemble", "--address", args.address, "--out", str(final)], out / "evaluate.log")
    report = json.loads((final / "evaluation.json").read_text())
    scores, steps = tables(report)
    text = "\n\n".join([
        f"{machine()}; experiment {experiment}; top {args.top}, {args.folds} folds; "
        f"{report['test_images']} test images; minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()),
        report["cv_ranking"],
        "steps, judged out of fold (final model: " + report["final_variant"] + "):\n"
        + "\n".join(f"  {line}" for line in [*(step["decision"] for step in report["steps"]),
                                              *report["ensemble_notes"]]),
        "test scores, 95% lesion-bootstrap intervals:\n" + scores.to_string(index=False),
        "what each step changed (value after minus value before):\n" + steps.to_string(),
    ])
    (out / "tables.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
