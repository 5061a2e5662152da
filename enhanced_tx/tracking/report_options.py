"""The report's options: a dataclass, its command-line flags and the ``report:`` block presets put in the
jobs' config (``conf/experiment/tuned_ablation.yaml``: ``report.tune: optimizer.lr``); the command line wins."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from enhanced_tx.errors import ConfigError

from .sweep_reader import Sweep

VALUE_COLUMNS = ("final", "best")  # which number of a job an arm compares: its last or its best evaluation


@dataclass(frozen=True)
class ReportOptions:
    """What the report compares; from the command line or a job config's ``report:`` block."""

    metric: str = "val/loss"
    mode: str = "min"
    value: str = "final"  # final: each job's last evaluation; best: its best one
    baseline: str | None = None  # KEY=VALUE[,KEY=VALUE]: the arm the others are compared with; None: the first
    tune: str | None = None  # a swept key (optimizer.lr): each arm is read at its best value of it
    scale: tuple[str, ...] = ()  # swept keys that set the size or budget: fit L(C) per arm over them


def options_for(sweep: Sweep, **given: object) -> ReportOptions:
    """The report options: those given (not None) over the jobs' ``report:`` config block (set by presets)."""
    block = next((job.config.get("report") for job in sweep.jobs if isinstance(job.config.get("report"), dict)), {})
    known = {f.name for f in fields(ReportOptions)}
    merged = {k: v for k, v in block.items() if k in known and v is not None}
    merged.update({k: v for k, v in given.items() if v is not None})
    if isinstance(merged.get("scale"), str):
        merged["scale"] = tuple(k for k in merged["scale"].split(",") if k)
    merged["scale"] = tuple(merged.get("scale") or ())
    return ReportOptions(**merged)


def add_report_options(parser: argparse.ArgumentParser, wandb: bool = True) -> None:
    """The report's options on ``parser`` (``wandb``: also --wandb, for commands that log the report)."""
    parser.add_argument("--metric", default=None, help="metric to rank by (default: val/loss)")
    parser.add_argument("--mode", choices=("min", "max"), default=None, help="min: lower is better (default)")
    parser.add_argument("--value", choices=VALUE_COLUMNS, help="each job's final (default) or best value")
    parser.add_argument("--baseline", help="KEY=VALUE[,KEY=VALUE]: the arm compared with (default: the first)")
    parser.add_argument("--tune", help="a swept key (optimizer.lr): each arm at its best value of it")
    parser.add_argument("--scale", help="swept size/budget keys, comma-separated: fit L = E + A*C^-alpha per arm")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    if not wandb:
        return
    parser.add_argument(
        "--wandb",
        choices=("offline", "online", "off"),
        default="offline",
        help="log the report as a W&B run (job_type=report) when the jobs used W&B (default: offline)",
    )


def options_from_args(sweep: Sweep, args: argparse.Namespace) -> ReportOptions:
    given = {k: getattr(args, k) for k in ("metric", "mode", "value", "baseline", "tune", "scale")}
    for setting in getattr(args, "settings", []):
        key, sep, value = setting.partition("=")
        name = key.removeprefix("report.")
        if not sep or not key.startswith("report.") or name not in given:
            known = ", ".join(f"report.{k}" for k in given)
            raise ConfigError(f"{setting!r} is not a report setting; use one of {known} (KEY=VALUE)")
        given[name] = value
    return options_for(sweep, **given)
