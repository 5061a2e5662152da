"""Text for the runs command: a run per line, one run in detail, two runs side by side."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tracking.report_markdown import format_number
from enhanced_tx.tracking.report_table import NUMBER_COLUMNS, job_numbers
from enhanced_tx.tracking.sweep_reader import JobRecord

from .catalog import last_written

MONITOR = "val/loss"
ERROR_WIDTH = 100  # characters of a failed run's error shown in a list


def list_lines(jobs: Sequence[JobRecord], cwd: Path) -> list[str]:
    """``status  when  steps  best  folder  overrides``; a failed run shows its error, never numbers of None."""
    if not jobs:
        return ["no runs found"]
    lines = [f"{'status':<10} {'written':<16} {'steps':>6} {'best':>10}  folder  overrides"]
    for job in jobs:
        numbers = job_numbers(job, monitor_of(job))
        steps = "-" if numbers["steps"] is None else f"{numbers['steps']:.0f}"
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime(last_written(job)))
        best = format_number("best", numbers["best"])
        folder = _relative(job.job_dir, cwd)
        lines.append(f"{job.status:<10} {written:<16} {steps:>6} {best:>10}  {folder}  {' '.join(job.overrides)}")
        if job.error is not None:
            lines.append(f"{'':<10} error: {job.error[:ERROR_WIDTH]}")
    counts = {s: sum(1 for j in jobs if j.status == s) for s in ("ok", "failed", "running", "incomplete")}
    lines.append(f"{len(jobs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return lines


def show_lines(job: JobRecord) -> list[str]:
    run = RunFolder(job.job_dir)
    lines = [f"run:       {job.job_dir}", f"status:    {job.status}"]
    if job.error is not None:
        lines.append(f"error:     {job.error}")
    lines.append(f"overrides: {' '.join(job.overrides) or '(none)'}")
    lines.append("choices:   " + (" ".join(f"{k}={v}" for k, v in sorted(job.choices.items())) or "(unknown)"))
    numbers = job_numbers(job, monitor_of(job))
    lines += [f"{heading + ':':<11}{format_number(column, numbers[column])}" for column, heading in NUMBER_COLUMNS]
    lines += [f"summary:   {key} = {value}" for key, value in sorted(job.summary.items())]
    checkpoints = sorted(p.name for p in run.checkpoints_dir.glob("*.pt")) if run.checkpoints_dir.is_dir() else []
    lines.append(f"weights:   {run.weights.name if run.weights.is_file() else '-'}")
    lines.append(f"checkpoints: {' '.join(checkpoints) or '-'}")
    return lines


def diff_lines(first: JobRecord, second: JobRecord) -> list[str]:
    """Config keys whose values differ (a key only one run has shows ``-``), then every compared number."""
    a, b = flatten(first.config), flatten(second.config)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
    width = max([len(k) for k in keys] + [len("number"), 24])
    head = f"{'':<{width}}  {_short(first.job_dir.name):<28}  {_short(second.job_dir.name)}"
    lines = [head, "config that differs:" if keys else "config: identical"]
    lines += [f"{k:<{width}}  {_show(a.get(k, _MISSING)):<28}  {_show(b.get(k, _MISSING))}" for k in keys]
    lines.append("numbers:")
    numbers = [job_numbers(j, monitor_of(j)) for j in (first, second)]
    for column, heading in NUMBER_COLUMNS:
        cells = [format_number(column, n[column]) for n in numbers]
        lines.append(f"{heading:<{width}}  {cells[0]:<28}  {cells[1]}")
    lines.append(f"{'status':<{width}}  {first.status:<28}  {second.status}")
    return lines


def monitor_of(job: JobRecord) -> str:
    monitor = (job.config.get("trainer") or {}).get("monitor")
    return monitor if isinstance(monitor, str) else MONITOR


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


_MISSING = object()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "-"
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:g}"
    return str(value)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _relative(path: Path, cwd: Path) -> str:
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)
