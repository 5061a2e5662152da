"""Compare the jobs of a sweep without W&B: ``python -m enhanced_tx.tracking.report multirun/DATE/TIME``.

Writes into the sweep folder ``report.md`` and ``report.html`` (the same page, figures embedded),
``report.csv`` (one line per job, best first), with seed replicates ``report_groups.csv`` (mean ± std per
configuration), ``report_stats.csv`` (each arm's interval and its comparison with the baseline arm), and
PNG plots: the validation metric of every job against steps, tokens and FLOPs, the training loss, the best
value by each swept choice; with seeds, bands and a forest plot of the differences; tuned and scaling
sweeps get their own (report_science). When the jobs logged to W&B the report is logged there too
(report_wandb). See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from enhanced_tx.errors import ConfigError, EnhancedTxError

from .report_html import write_html
from .report_markdown import render_markdown
from .report_options import ReportOptions, add_report_options, options_for, options_from_args
from .report_plots import MIN_READABLE_POINTS, sparse_curves
from .report_science import Science, analyse
from .report_science_csv import write_stats_csv
from .report_science_md import science_sections
from .report_table import Group, Row, build_rows, has_replicates, seed_groups, write_csv, write_groups_csv
from .sweep_reader import Sweep, read_sweep

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
GROUPS_CSV = "report_groups.csv"
STATS_CSV = "report_stats.csv"
REPORT_HTML = "report.html"
SPARSE_SHOWN = 8  # jobs named in "curves too short to read"


@dataclass
class Report:
    sweep: Sweep
    rows: list[Row]  # best first
    groups: list[Group]  # seed-replicate groups, best mean first
    files: list[Path]  # everything written
    science: Science | None = None
    options: ReportOptions = field(default_factory=ReportOptions)


def build_report(
    sweep_dir: str | os.PathLike,
    metric: str = "val/loss",
    mode: str = "min",
    plots: bool = True,
    options: ReportOptions | None = None,
) -> Report:
    """Read the sweep folder and write the report files into it."""
    sweep = read_sweep(sweep_dir)
    return write_report(sweep, sweep.sweep_dir, options or options_for(sweep, metric=metric, mode=mode), plots)


def write_report(sweep: Sweep, out: Path, options: ReportOptions, plots: bool = True) -> Report:
    """The report of ``sweep``'s jobs, written into ``out``."""
    metric, mode = options.metric, options.mode
    if mode not in ("min", "max"):
        raise ConfigError(f"report mode={mode!r} must be min (lower is better) or max")
    if not sweep.jobs:
        raise FileNotFoundError(f"no job folders (with .hydra/overrides.yaml) under {sweep.sweep_dir}")
    out.mkdir(parents=True, exist_ok=True)
    rows = build_rows(sweep.jobs, metric, mode)
    groups = seed_groups(rows, mode)
    science = analyse(rows, options)
    files = [out / REPORT_CSV]
    write_csv(out / REPORT_CSV, rows, metric)
    if has_replicates(groups):
        write_groups_csv(out / GROUPS_CSV, groups, metric)
        files.append(out / GROUPS_CSV)
    files.append(write_stats_csv(out / STATS_CSV, science, mode))
    images = _plots(out, rows, groups, sweep, science, options) if plots else []
    extra = science_sections(science, options) + _sparse_notes(rows, metric)
    text = render_markdown(sweep, rows, groups, metric, mode, images, extra)
    (out / REPORT_MD).write_text(text, encoding="utf-8")
    files += [out / REPORT_MD, *(out / name for name in images)]
    files.append(write_html(out / REPORT_HTML, text, out))
    return Report(sweep, rows, groups, files, science, options)


def _sparse_notes(rows: list[Row], metric: str) -> list[str]:
    sparse = sparse_curves(rows, metric)
    if not sparse:
        return []
    lines = ["", "## Curves too short to read", ""]
    lines.append(f"These jobs logged fewer than {MIN_READABLE_POINTS} evaluations of `{metric}`: dots, not curves.")
    lines.append("Evaluate more often (trainer.eval_every) or train longer to see a trend.")
    shown = [f"- job {item}" for item in sparse[:SPARSE_SHOWN]]
    more = [f"- ... and {len(sparse) - SPARSE_SHOWN} more"] if len(sparse) > SPARSE_SHOWN else []
    return lines + [""] + shown + more


def _plots(
    out: Path, rows: list[Row], groups: list[Group], sweep: Sweep, science: Science, options: ReportOptions
) -> list[str]:
    try:
        from .report_plots import plot_report
        from .report_plots_science import plot_science
    except ImportError as e:  # matplotlib is a dependency, but a broken install should not cost the tables
        print(f"warning: no plots ({e})", file=sys.stderr)
        return []
    names = plot_report(out, rows, groups, options.metric, options.mode, optuna=sweep.optuna is not None)
    return names + plot_science(out, rows, science, options)


def latest_sweep(root: str | os.PathLike = "multirun") -> Path:
    """The newest ``multirun/DATE/TIME`` folder (names sort by time)."""
    sweeps = sorted(p for p in Path(root).glob("*/*") if p.is_dir())
    if not sweeps:
        raise FileNotFoundError(f"no sweep folders under {Path(root).resolve()}")
    return sweeps[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enhanced_tx.tracking.report",
        description="Compare the jobs of a Hydra sweep folder: report.md, report.html, CSVs and PNG plots in it.",
        epilog="Hydra-style settings work too: report.baseline=norm=layernorm report.tune=optimizer.lr",
    )
    parser.add_argument(
        "sweep_dir", help="the sweep folder (multirun/DATE/TIME), or 'latest': the newest under multirun/"
    )
    parser.add_argument("settings", nargs="*", help="report.KEY=VALUE settings (same as the options below)")
    add_report_options(parser)
    args = parser.parse_args(argv)
    try:
        sweep_dir = latest_sweep() if args.sweep_dir == "latest" else Path(args.sweep_dir)
        sweep = read_sweep(sweep_dir)
        report = write_report(sweep, sweep.sweep_dir, options_from_args(sweep, args), plots=not args.no_plots)
        print_summary(report)
        if args.wandb != "off" and uses_wandb(sweep):
            from .report_wandb import log_report

            folder = log_report(report, mode=args.wandb)
            sync = f" (sync it: wandb sync {folder})" if args.wandb == "offline" else ""
            print(f"W&B report run (job_type=report): {folder}{sync}")
    except (FileNotFoundError, EnhancedTxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def print_summary(report: Report) -> None:
    rows, metric = report.rows, report.options.metric
    failed = sum(1 for r in rows if r.status == "failed")
    print(f"{len(rows)} jobs ({failed} failed) -> {report.sweep.sweep_dir / REPORT_MD}")
    for row in rows[:5]:
        best = row.numbers["best"]
        shown = f"{best:.4f}" if best is not None else "-"
        job = row.job.num if row.job.num is not None else row.job.job_dir.name  # single runs have no number
        print(f"  {job!s:>3}  {row.status:<10} {metric} {shown:>8}  {row.label}")


def uses_wandb(sweep: Sweep) -> bool:
    """A job of the sweep logged to W&B (it has a ``wandb/`` folder)."""
    return any((job.job_dir / "wandb").is_dir() for job in sweep.jobs)


if __name__ == "__main__":
    sys.exit(main())
