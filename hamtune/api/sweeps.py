"""Sweeps from Python: load a sweep file with the CLI's overrides, run it, get its `Experiment`."""

from __future__ import annotations

import os
from typing import Any

from hamtune.api.experiment import Experiment
from hamtune.config import SweepConfig, with_overrides
from hamtune.config import load_sweep as read_sweep


def load_sweep(path: str | os.PathLike[str], **overrides: Any) -> SweepConfig:
    """Read and validate a sweep file; `overrides` are `hamtune sweep`'s (`hamtune.config.OVERRIDES`:
    name, data_dir, storage, trials), and the result is validated exactly like a file."""
    return with_overrides(read_sweep(path), **overrides)


def run_sweep(sweep: SweepConfig | str | os.PathLike[str], data: str | os.PathLike[str] | None = None,
              storage: str | os.PathLike[str] | None = None, *,
              name: str | None = None, trials: int | None = None, resume: bool = False,
              address: str | None = None, dry_run: bool = False, verbose: bool = False) -> Experiment | None:
    """Run a sweep (a `SweepConfig` or a sweep file's path) to its end and open the experiment it wrote.

    `data`, `storage`, `name` and `trials` override the sweep's settings, as `hamtune sweep`'s
    flags do; `resume` continues an interrupted sweep with the settings it started with (raising
    `SweepInterrupted` when stopped again). `address` joins a Ray cluster (auto or host:port;
    default: a private Ray instance here). A `dry_run` prints the plan, writes nothing and
    returns None.
    """
    from hamtune.store.experiment import experiment_for
    from hamtune.sweep.cluster import check_address
    from hamtune.sweep.run import run_sweep as run

    check_address(address)  # before anything is read: a bad address is the cheapest mistake to report
    if not isinstance(sweep, SweepConfig):
        sweep = read_sweep(sweep)
    sweep = with_overrides(sweep, data_dir=data, storage=storage, name=name, trials=trials)
    if run(sweep, address=address, resume=resume, dry_run=dry_run, verbose=verbose) is None:
        return None
    return Experiment(experiment_for(sweep.storage, sweep.name))
