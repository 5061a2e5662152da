"""Compare the jobs of a sweep without W&B: ``python -m enhanced_tx.tracking.report multirun/DATE/TIME``.

Writes into the sweep folder ``report.md``, ``report.csv`` (one line per job, best first), with seed
replicates ``report_groups.csv`` (mean ± std per configuration), and PNG plots: the validation metric of
every job against steps, tokens and FLOPs, the best value by each swept choice (and per configuration with
error bars when there are seed replicates; the search history for Optuna sweeps). See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .report_markdown import render_markdown
from .report_table import Group, Row, build_rows, has_replicates, seed_groups, write_csv, write_groups_csv
from .sweep_reader import Sweep, read_sweep

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
GROUPS_CSV = "report_groups.csv"


@dataclass
class Report:
    sweep: Sweep
    rows: list[Row]  # best first
    groups: list[Group]  # seed-replicate groups, best mean first
    files: list[Path]  # everything written


def build_report(
    sweep_dir: str | os.PathLike, metric: str = "val/loss", mode: str = "min", plots: bool = True
) -> Report:
    """Read the sweep folder and write the report files into it."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
    sweep = read_sweep(sweep_dir)
    if not sweep.jobs:
        raise FileNotFoundError(f"no job folders (with .hydra/overrides.yaml) under {sweep.sweep_dir}")
    rows = build_rows(sweep.jobs, metric, mode)
    groups = seed_groups(rows, mode)
    out = sweep.sweep_dir
    files = [out / REPORT_CSV]
    write_csv(out / REPORT_CSV, rows, metric)
    if has_replicates(groups):
        write_groups_csv(out / GROUPS_CSV, groups, metric)
        files.append(out / GROUPS_CSV)
    images = _plots(out, rows, groups, metric, mode, sweep) if plots else []
    (out / REPORT_MD).write_text(render_markdown(sweep, rows, groups, metric, mode, images), encoding="utf-8")
    files += [out / REPORT_MD, *(out / name for name in images)]
    return Report(sweep, rows, groups, files)


def _plots(out: Path, rows: list[Row], groups: list[Group], metric: str, mode: str, sweep: Sweep) -> list[str]:
    try:
        from .report_plots import plot_report
    except ImportError as e:  # matplotlib is a dependency, but a broken install should not cost the tables
        print(f"warning: no plots ({e})", file=sys.stderr)
        return []
    return plot_report(out, rows, groups, metric, mode, optuna=sweep.optuna is not None)


def latest_sweep(root: str | os.PathLike = "multirun") -> Path:
    """The newest ``multirun/DATE/TIME`` folder (names sort by time)."""
    sweeps = sorted(p for p in Path(root).glob("*/*") if p.is_dir())
    if not sweeps:
        raise FileNotFoundError(f"no sweep folders under {Path(root).resolve()}")
    return sweeps[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enhanced_tx.tracking.report",
        description="Compare the jobs of a Hydra sweep folder: report.md, report.csv and PNG plots in it.",
    )
    parser.add_argument(
        "sweep_dir", help="the sweep folder (multirun/DATE/TIME), or 'latest': the newest under multirun/"
    )
    parser.add_argument("--metric", default="val/loss", help="metric to rank by (default: val/loss)")
    parser.add_argument("--mode", choices=("min", "max"), default="min", help="min: lower is better (default)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        sweep_dir = latest_sweep() if args.sweep_dir == "latest" else Path(args.sweep_dir)
        report = build_report(sweep_dir, args.metric, args.mode, plots=not args.no_plots)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    failed = sum(1 for r in report.rows if r.status == "failed")
    print(f"{len(report.rows)} jobs ({failed} failed) -> {report.sweep.sweep_dir / REPORT_MD}")
    for row in report.rows[:5]:
        best = row.numbers["best"]
        shown = f"{best:.4f}" if best is not None else "-"
        print(f"  {row.job.num:>3}  {row.status:<10} {args.metric} {shown:>8}  {row.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
