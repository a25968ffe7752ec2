"""Benchmarks run in parts: each (seed, arm) keeps its result in its own file as it finishes.

A benchmark of several seeds takes hours on 2 cores; run again, it skips every (seed, arm)
whose file is there, so it can be stopped and continued, or run a seed at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine import machine  # benchmarks/machine.py


def run_parts(out: Path, seeds: Sequence[int], arms: Sequence[str],
              run: Callable[[str, int, dict[str, dict[str, Any]]], dict[str, Any]],
              describe: Callable[[dict[str, Any]], str] | None = None) -> None:
    """`run(arm, seed, done)` for each (seed, arm) without `out/<seed>-<arm>.json`, in order, and
    that file written as soon as it returns; `done` holds the seed's earlier arms' results.

    Each result gets its arm, seed, the machine line and (unless `run` measured it) `wall_s`;
    `describe(result)` is printed after the arm when given.
    """
    for seed in seeds:
        done: dict[str, dict[str, Any]] = {}
        for arm in arms:
            path = out / f"{seed}-{arm}.json"
            if path.exists():
                done[arm] = json.loads(path.read_text())
                print(f"seed {seed} {arm}: done before, kept ({path})", flush=True)
                continue
            started = time.time()
            result = {"arm": arm, "seed": seed, "machine": machine(), **run(arm, seed, done)}
            result.setdefault("wall_s", time.time() - started)
            path.write_text(json.dumps(result, indent=1))
            done[arm] = result
            if describe:
                print(f"seed {seed} {arm}: {describe(result)}", flush=True)
