"""Scaling benchmark: trials/hour with 1, 2 and 4 concurrent trials on a multi-node Ray cluster.

    python benchmarks/scaling.py [--nodes 1 2 4] [--trials 8] [--epochs 3] [--epoch-seconds 2]
                                 [--work sleep|cpu]

For each node count N, a `ray.cluster_utils.Cluster` on this machine gets a head node with no
CPUs (it runs only the driver, as on a real cluster) and N worker nodes of 1 logical CPU each,
and a sweep runs `--trials` tiny trials with `max_concurrent_trials=N`, searched and stopped
exactly as hamtune's sweeps are: OptunaSearch over the smoke sweep's space with hamtune's
seeded TPE sampler (`hamtune.search.space`), ASHA on the epoch count, one report per epoch, a
fresh worker process per trial (`reuse_actors=False`).

A trial's "epoch" is `--epoch-seconds` of `sleep` (the default: a GPU-bound trial whose host
CPU is idle, so only orchestration competes for the 2 cores) or of busy numpy work (`cpu`:
then the machine's 2 physical cores bound real parallelism, whatever the logical resources
say). The baseline is the same epochs run back to back with no Ray at all: N × that rate is
perfect scaling (compared per epoch, since ASHA stops some trials early). Reported per N: node start-up time, sweep wall time, trials/hour, the share
of trial slots not spent inside trials (scheduling, worker start-up, Optuna, reporting).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from machine import machine  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"


def do_work(seconds: float, kind: str) -> None:
    """One epoch's worth of work: idle host (sleep) or busy CPU (matrix products)."""
    if kind == "sleep":
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    matrix = np.random.default_rng(0).random((128, 128))
    while time.perf_counter() < end:
        matrix = np.tanh(matrix @ matrix)


def tiny_trial(config: dict, epochs: int, epoch_seconds: float, kind: str) -> None:
    """A stand-in trial: per epoch, fixed work then one report with a made-up objective."""
    from ray import tune

    started = time.perf_counter()
    quality = 1 / (1 + abs(math.log10(config["learning_rate"]) + 3))
    for epoch in range(1, epochs + 1):
        do_work(epoch_seconds, kind)
        tune.report({"val_macro_f1": quality * epoch / epochs,
                     "trial_seconds": time.perf_counter() - started})


def run_sweep(nodes: int, trials: int, epochs: int, epoch_seconds: float, kind: str,
              storage: Path) -> dict[str, float]:
    import ray
    from ray import tune
    from ray.cluster_utils import Cluster
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from hamtune.config import load_sweep
    from hamtune.search.space import define_space, make_sampler

    space = load_sweep(SMOKE).space
    tick = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    head_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    nodes_seconds = time.perf_counter() - tick
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        searcher = OptunaSearch(space=partial(define_space, space=space), metric="val_macro_f1",
                                mode="max", sampler=make_sampler(0))
        tuner = tune.Tuner(
            tune.with_resources(
                partial(tiny_trial, epochs=epochs, epoch_seconds=epoch_seconds, kind=kind), {"cpu": 1}
            ),
            tune_config=tune.TuneConfig(
                metric="val_macro_f1", mode="max", search_alg=searcher,
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1),
                num_samples=trials, max_concurrent_trials=nodes, reuse_actors=False,
            ),
            run_config=tune.RunConfig(storage_path=str(storage), name=f"scaling-{nodes}", verbose=0),
        )
        tick = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - tick
        frame = grid.get_dataframe()
        inside = float(frame["trial_seconds"].sum())
        epochs_run = int(frame["training_iteration"].sum())
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "head start s": head_seconds,
        "nodes start s": nodes_seconds,
        "start s per node": nodes_seconds / nodes,
        "sweep wall s": wall,
        "epochs run": epochs_run,
        "trials/hour": 3600 * trials / wall,
        "epochs/hour": 3600 * epochs_run / wall,
        "slot time outside trials %": 100 * (1 - inside / (nodes * wall)),
        "load average": os.getloadavg()[0],
    }


def sequential_baseline(epochs: int, epoch_seconds: float, kind: str) -> float:
    """Epochs/hour of the same work back to back in this process, no Ray: the 1-slot ideal."""
    tick = time.perf_counter()
    for _ in range(epochs):
        do_work(epoch_seconds, kind)
    return 3600 * epochs / (time.perf_counter() - tick)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-seconds", type=float, default=2.0)
    parser.add_argument("--work", choices=["sleep", "cpu"], default="sleep")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")

    baseline = sequential_baseline(args.epochs, args.epoch_seconds, args.work)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="hamtune-scaling-") as scratch:
        for nodes in args.nodes:
            rows[nodes] = run_sweep(nodes, args.trials, args.epochs, args.epoch_seconds, args.work,
                                    Path(scratch))
    table = pd.DataFrame(rows).T
    table.index.name = "nodes = concurrent trials"
    table["x 1 node"] = table["trials/hour"] / table["trials/hour"].iloc[0]
    table["% of N x no-Ray epochs/hour"] = (
        100 * table["epochs/hour"] / (baseline * table.index.to_numpy())
    )
    print(f"\n{args.trials} trials x up to {args.epochs} epochs of {args.epoch_seconds:g} s "
          f"({args.work}), ASHA may stop some early; machine: {machine()}")
    print(f"baseline, the same epochs back to back without Ray: {baseline:.0f} epochs/hour "
          f"(ASHA stops some trials early, so rates compare per epoch)\n")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
