"""The `hamtune` command line: thin wrappers that parse arguments and print; the work is elsewhere.

One module per command group registers its sub-commands (`register(commands)`): `data`, `train`,
`sweep`, `results` (analyze) and `evaluation` (refit, export, evaluate, predict); where the
Python API (`hamtune.api`) does what a command does, the command calls it. Every user-fixable
problem is a HamtuneError, printed as `hamtune: error: ...` with exit status 2 (1 for a data
check that found problems); `--debug` shows the traceback instead. Heavy packages (TensorFlow,
Ray) are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import hamtune
from hamtune.cli import data, evaluation, results, sweep, train
from hamtune.cli.sweep import resume_command
from hamtune.errors import HamtuneError
from hamtune.version import __version__

__all__ = ["build_parser", "main", "resume_command"]

#: The command groups, in the order `hamtune --help` lists them.
GROUPS = (data, train, sweep, results, evaluation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamtune", description=hamtune.__doc__)
    parser.add_argument("--version", action="version", version=f"hamtune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hamtune").setLevel(logging.DEBUG if args.debug else logging.INFO)
    try:
        return args.run(args)
    except HamtuneError as error:
        if args.debug:
            raise
        print(f"hamtune: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hamtune: interrupted", file=sys.stderr)
        return 130
