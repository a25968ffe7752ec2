"""Sweep-overhead benchmark: a real smoke sweep, split into trial time and everything else.

    python benchmarks/sweep_overhead.py [--sweep sweeps/smoke.yaml]

Runs the sweep with `hamtune.sweep.run.run_sweep` into a temporary storage path and reads back
Tune's per-trial `result.json` (`time_total_s`: the trial function's own wall time, from the
moment its worker starts running it) and hamtune's epochs table (`train_seconds`: the sum of
the `fit` calls, graph tracing included; `timestamp` is whole seconds, so trial start and end
are known to ±1 s). Reports:

  per trial        wall, fit time, the rest (imports, data attach, build, evaluation,
                   checkpoints, reports) and its share of the trial's wall time;
  per sweep        `run_sweep` wall time, split into data preparation + Ray start-up before
                   Tune runs, and the Tune run itself against the trials' slot time:
                   time in the Tune run with no trial running (worker start-up, scheduling,
                   Optuna, the end of the run), and the slot share outside trials,
                   1 - sum(trial wall) / (max_concurrent x Tune wall), which also counts a
                   slot left idle because no trial is left to start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) intervals."""
    total, reach = 0.0, -float("inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "smoke.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from ray import tune

    from hamtune.config import load_sweep
    from hamtune.sweep.run import run_sweep

    tuner_span: list[float] = []
    fit = tune.Tuner.fit

    def timed_fit(self: tune.Tuner):  # the Tune run alone, without data preparation or ray.init
        tuner_span.append(time.time())
        try:
            return fit(self)
        finally:
            tuner_span.append(time.time())

    tune.Tuner.fit = timed_fit
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="hamtune-sweep-overhead-") as scratch:
        sweep = dataclasses.replace(load_sweep(args.sweep), storage=scratch)
        tick = time.perf_counter()
        run_sweep(sweep, echo=lambda *_: None)
        total = time.perf_counter() - tick
        load.append(os.getloadavg()[0])
        experiment = Path(scratch) / sweep.name
        trials = {}
        for result in experiment.glob("trial_*/result.json"):
            rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            last = rows[-1]
            trials[result.parent.name] = {
                "model": last["config"]["model"],
                "start": last["timestamp"] - last["time_total_s"],
                "end": last["timestamp"],
                "epochs": len(rows),
                "trial wall s": last["time_total_s"],
                "fit s (tracing incl.)": max(row.get("train_seconds", 0.0) for row in rows),
                "checkpoint MB": sum(f.stat().st_size for f in result.parent.glob("checkpoint_*/*")
                                     if f.is_file()) / 1e6,
            }
    table = pd.DataFrame(trials).T.sort_index()
    table["other s"] = table["trial wall s"] - table["fit s (tracing incl.)"]
    table["other % of trial"] = 100 * table["other s"] / table["trial wall s"]
    slots = sweep.search.max_concurrent
    tune_wall = tuner_span[1] - tuner_span[0]
    inside = float(table["trial wall s"].sum())
    busy = covered(list(zip(table["start"], table["end"])))
    table = table.drop(columns=["start", "end"])
    print(f"\nsweep {args.sweep.name}: {len(table)} trials, {slots} concurrent; "
          f"load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after\n")
    print(table.round(1).to_string())
    print()
    print(pd.Series({
        "run_sweep wall s": total,
        "before Tune (data, cache, ray.init) s": total - tune_wall,
        "Tune run wall s": tune_wall,
        "sum of trial wall s": inside,
        "Tune wall with no trial running s": tune_wall - busy,
        "  as % of Tune wall (scheduling, worker start, Optuna, end)": 100 * (1 - busy / tune_wall),
        "slot time outside trials % (also counts slots idle for lack of trials)":
            100 * (1 - inside / (slots * tune_wall)),
        "fit share of all trial time %": 100 * table["fit s (tracing incl.)"].sum() / inside,
    }).round(1).to_string())


if __name__ == "__main__":
    main()
