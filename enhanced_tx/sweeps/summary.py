"""The table every multirun ends with: one line per job (overrides, monitored value, status), then the best job
and the commands for the sweep's report and for generating from the best job."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from enhanced_tx.errors import ConfigError
from enhanced_tx.runs.best import DEFAULT_MONITOR, best_run
from enhanced_tx.runs.catalog import find_jobs
from enhanced_tx.tracking.report_table import Row, build_rows

MAX_ROWS = 20  # longer sweeps (Optuna) show their best jobs; the report has them all
MAX_LABEL = 72  # characters of a job's overrides in the table (its folder name has them all)


def sweep_summary(sweep_dir: Path, prompt: str = "The transformer architecture is") -> list[str]:
    """The lines that end a multirun over `sweep_dir` (empty when it holds no job)."""
    jobs = find_jobs([sweep_dir]) if sweep_dir.is_dir() else []
    if not jobs:
        return []
    try:
        best = best_run([], sweep=sweep_dir)
    except ConfigError:  # no finished job with weights and the metric
        best = None
    from enhanced_tx.training.monitor import MONITORS  # monitor -> higher is better

    metric = best.metric if best is not None else DEFAULT_MONITOR  # no job has a value: any name will do
    mode = "max" if MONITORS.get(metric, False) else "min"
    rows = build_rows(jobs, metric, mode)
    lines = [f"sweep {sweep_dir}: {_counts(rows)}", *format_table(rows, metric, best.job.job_dir if best else None)]
    if best is None:
        return [*lines, f"no job finished with {metric} and weights: nothing to generate from"]
    sweep = shlex.quote(str(sweep_dir))
    label = next(r.label for r in rows if r.job.job_dir == best.job.job_dir)  # swept keys of the whole sweep
    return [
        *lines,
        f"best: job {best.job.name} ({label}) {metric} {best.value:.4f}  [{best.job.job_dir}]",
        f"  report:   python -m enhanced_tx.tracking.report {sweep}",
        f"  generate: python run_generate.py run=best sweep={sweep} prompt={shlex.quote(prompt)}",
    ]


def format_table(rows: Sequence[Row], metric: str, best_dir: Path | None = None) -> list[str]:
    """Fixed-width lines: job, overrides, `metric`, status; the best job marked `*`; at most MAX_ROWS jobs
    (the best ones, then a line saying how many more)."""
    shown = list(rows[:MAX_ROWS])
    cells = [("job", "overrides", metric, "status")]
    for row in sorted(shown, key=lambda r: (r.job.num is None, r.job.num or 0, r.job.name)):
        value = row.numbers.get("best")
        mark = "*" if best_dir is not None and row.job.job_dir == best_dir else ""
        label = row.label if len(row.label) <= MAX_LABEL else row.label[: MAX_LABEL - 3] + "..."
        cells.append((f"{row.job.name}{mark}", label, "-" if value is None else f"{value:.4f}", row.status))
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  " + "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
    if len(rows) > MAX_ROWS:
        lines.append(f"  ... and {len(rows) - MAX_ROWS} more jobs (the {MAX_ROWS} best are shown)")
    return [line.rstrip() for line in lines]


def _counts(rows: Sequence[Row]) -> str:
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    return f"{len(rows)} jobs, " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
