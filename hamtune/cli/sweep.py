"""`hamtune sweep`: run (or resume, or plan) a sweep through `hamtune.run_sweep`, then its top trials."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hamtune.errors import SweepInterrupted
from hamtune.keys import HYPERPARAMETERS, OBJECTIVE

#: The sweep file run when none is given: the repository's smoke sweep, on synthetic data.
DEFAULT_SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"
#: The columns of the top trials printed when a sweep ends.
SUMMARY_COLUMNS = ["trial_id", "status", *HYPERPARAMETERS, "best_epoch", OBJECTIVE.name, "val_balanced_accuracy",
                   "val_mel_recall"]


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a hyperparameter sweep (Ray Tune + Optuna + ASHA)")
    sweep.add_argument("sweep_file", nargs="?", default=str(DEFAULT_SWEEP), metavar="SWEEP_FILE",
                       help="sweep file (default: sweeps/smoke.yaml, synthetic data)")
    sweep.add_argument("--data", default=None, metavar="DIR", help="override data.dir (default: the sweep file's)")
    sweep.add_argument("--address", default=None,
                       help="join a Ray cluster: auto or host:port (default: a private Ray instance on this machine)")
    sweep.add_argument("--storage", default=None, metavar="PATH_OR_URI", help="override storage (default: the sweep file's)")
    sweep.add_argument("--name", default=None, help="override the experiment name (default: the sweep file's)")
    sweep.add_argument("--trials", type=int, default=None,
                       help="override search.trials (default: the sweep file's); not with --resume")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an interrupted sweep, with the settings it started with (default: start a new one)")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and exit, writing nothing")
    sweep.add_argument("--verbose", action="store_true",
                       help="also print Ray Tune's status tables (default: hamtune's progress display only)")
    sweep.set_defaults(run=_sweep)


def resume_command(args: argparse.Namespace) -> str:
    """The `hamtune sweep` command that continues this one: same file and locating flags, `--resume`."""
    words = ["hamtune", "sweep", args.sweep_file]
    for flag in ("data", "address", "storage", "name"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", getattr(args, flag)]
    return shlex.join([*words, "--resume"])


def _sweep(args: argparse.Namespace) -> int:
    import optuna

    from hamtune.api import run_sweep
    from hamtune.store.tables import EPOCHS_FILE, TRIALS_FILE

    # Optuna's INFO lines ("A new study created in memory") repeat what the sweep's header says.
    optuna.logging.set_verbosity(optuna.logging.DEBUG if args.debug else optuna.logging.WARNING)
    try:
        experiment = run_sweep(Path(args.sweep_file), data=args.data, storage=args.storage, name=args.name,
                               trials=args.trials, resume=args.resume, address=args.address, dry_run=args.dry_run,
                               verbose=args.verbose)
    except SweepInterrupted as stop:
        print(f"hamtune: {stop}; continue it with: {resume_command(args)}", file=sys.stderr)
        return 130
    if experiment is not None:
        print("\ntop trials by val_macro_f1:")
        print(experiment.trials[SUMMARY_COLUMNS].head(5).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"\ntables: {experiment.uri}/{TRIALS_FILE}\n        {experiment.uri}/{EPOCHS_FILE}")
    return 0
