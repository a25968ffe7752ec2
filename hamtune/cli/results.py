"""`hamtune analyze`: the leaderboard, model comparison and importance of one or more sweeps, and a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser("analyze", help="leaderboard, model comparison, importance, plots, HTML report")
    analyze.add_argument("paths", nargs="+", metavar="PATH",
                         help="a trials.parquet, an experiment directory or a URI; several merge (sweep column)")
    analyze.add_argument("--out", default=None, metavar="DIR", help="also write PNG plots and report.html here")
    analyze.add_argument("--top", type=int, default=10, help="leaderboard rows (default: 10)")
    analyze.add_argument("--metric", default="val_macro_f1", help="validation metric to rank by (default: val_macro_f1)")
    analyze.add_argument("--format", default="table", help="table (default), markdown, csv or json")
    analyze.set_defaults(run=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from hamtune.results.analysis import analyze
    from hamtune.results.report import format_analysis, write_report

    analysis = analyze(args.paths, metric=args.metric, top=args.top)
    print(format_analysis(analysis, args.format))
    if args.out:
        report, *images = write_report(analysis, Path(args.out))
        stream = sys.stdout if args.format in ("table", "markdown") else sys.stderr  # keep csv/json stdout clean
        print(f"\nreport: {report} (+ {len(images)} PNG plots in {report.parent})", file=stream)
    return 0
