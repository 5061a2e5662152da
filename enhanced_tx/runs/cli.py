"""``python -m enhanced_tx.runs list|show|diff|compare|best``: look at runs and sweeps without W&B."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.tracking.report_options import add_report_options, options_from_args
from enhanced_tx.tracking.sweep_reader import Sweep

from .best import best_run
from .catalog import find_jobs, resolve_one
from .describe import diff_lines, list_lines, show_lines

DEFAULT_ROOTS = ("outputs", "multirun")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lines = args.command(args)
    except EnhancedTxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m enhanced_tx.runs", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="one line per run under FOLDER (default: outputs/ and multirun/)")
    listing.add_argument("folders", nargs="*", metavar="FOLDER")
    listing.set_defaults(command=_list)
    show = commands.add_parser("show", help="one run: status, overrides, choices, numbers, files")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(command=lambda a: show_lines(resolve_one(a.run)))
    diff = commands.add_parser("diff", help="two runs side by side: config keys that differ, then the numbers")
    diff.add_argument("runs", nargs=2, metavar="RUN")
    diff.set_defaults(command=lambda a: diff_lines(resolve_one(a.runs[0]), resolve_one(a.runs[1])))
    compare = commands.add_parser("compare", help="the sweep report over any runs or sweeps (report.md, ...)")
    compare.add_argument("folders", nargs="+", metavar="FOLDER")
    compare.add_argument("--out", help="where the report goes (default: the folder if one, else compare-TIME/)")
    add_report_options(compare, wandb=False)
    compare.set_defaults(command=_compare, settings=[])
    best = commands.add_parser("best", help="the job with the best monitored value of the newest (or a) sweep")
    best.add_argument("--sweep", help="the sweep folder (default: the newest under outputs/ and multirun/)")
    best.add_argument("--metric", help="default: the jobs' trainer.monitor")
    best.set_defaults(command=lambda a: [best_run(DEFAULT_ROOTS, a.sweep, a.metric).describe()])
    return parser


def _list(args: argparse.Namespace) -> list[str]:
    folders = args.folders or [r for r in DEFAULT_ROOTS if Path(r).is_dir()]
    if not folders:
        raise EnhancedTxError("no outputs/ or multirun/ here: pass the folder that holds your runs")
    return list_lines(find_jobs(folders), Path.cwd())


def _compare(args: argparse.Namespace) -> list[str]:
    jobs = find_jobs(args.folders)
    if not jobs:
        raise EnhancedTxError(f"no runs under {' '.join(args.folders)}")
    if len(args.folders) == 1 and not args.out:
        out = Path(args.folders[0])
    else:
        out = Path(args.out or f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
        # runs of several sweeps share job numbers: name them by folder instead
        jobs = [dataclasses.replace(job, num=None) for job in jobs]
    from enhanced_tx.tracking.report import print_summary, write_report  # scipy, matplotlib: only here

    sweep = Sweep(out, jobs, sweeper="compare")
    report = write_report(sweep, out, options_from_args(sweep, args), plots=not args.no_plots)
    print_summary(report)
    return []
