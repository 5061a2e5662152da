"""``report.md``: the sweep comparison as Markdown (tables, failures, Optuna result, plots)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .report_table import NUMBER_COLUMNS, Group, Row, has_replicates
from .sweep_reader import Sweep


def render_markdown(
    sweep: Sweep,
    rows: Sequence[Row],
    groups: Sequence[Group],
    metric: str,
    mode: str,
    plots: Sequence[str],
    extra: Sequence[str] = (),
) -> str:
    """The whole report; ``extra`` (Markdown lines: the conclusions) comes before the failures and plots."""
    failed = [r for r in rows if r.status == "failed"]
    ok = [r for r in rows if r.status == "ok"]
    lines = [
        f"# Sweep report: {sweep.sweep_dir.name}",
        "",
        f"- folder: `{sweep.sweep_dir}`",
        f"- sweeper: `{sweep.sweeper or 'unknown'}`",
        f"- jobs: {len(rows)} ({len(ok)} ok, {len(failed)} failed, {len(rows) - len(ok) - len(failed)} incomplete)",
        f"- metric: best `{metric}` ({'lower' if mode == 'min' else 'higher'} is better)",
    ]
    if ok and rows[0].numbers["best"] is not None:
        best = format_number("best", rows[0].numbers["best"])
        lines.append(f"- best job: {rows[0].job.name} `{rows[0].label}`: {best}")
    lines += ["", "## Jobs", "", *_jobs_table(rows)]
    if has_replicates(groups):
        lines += ["", "## Seed replicates", "", "Jobs that differ only by `seed`: mean ± std over the seeds.", ""]
        lines += _groups_table(groups)
    lines += list(extra)
    if sweep.optuna:
        lines += ["", "## Optuna", "", *_optuna(sweep.optuna)]
    if failed:
        lines += ["", "## Failed jobs", ""]
        lines += [f"- job {r.job.name} `{r.label}`: {r.job.error}" for r in failed]
    if sweep.notes:
        lines += ["", "## Unreadable folders", "", *(f"- {note}" for note in sweep.notes)]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _jobs_table(rows: Sequence[Row]) -> list[str]:
    headings = ["job", "status", "config", *(h for _, h in NUMBER_COLUMNS)]
    lines = [_cells(headings), _cells(["---"] * len(headings))]
    for row in rows:
        numbers = [format_number(column, row.numbers[column]) for column, _ in NUMBER_COLUMNS]
        lines.append(_cells([row.job.name, row.status, f"`{row.label}`", *numbers]))
    return lines


def _groups_table(groups: Sequence[Group]) -> list[str]:
    headings = ["config", "seeds", "failed", "best", "final", "tokens/s", "MFU", "wall s"]
    lines = [_cells(headings), _cells(["---"] * len(headings))]
    for g in groups:
        numbers = [_pm(c, g.mean[c], g.std[c]) for c in ("best", "final", "tokens_per_s", "mfu", "wall_s")]
        lines.append(_cells([f"`{g.label}`", str(g.n), str(g.n_failed), *numbers]))
    return lines


def _optuna(results: dict[str, Any]) -> list[str]:
    lines = []
    if "best_value" in results:
        lines.append(f"- best value: {results['best_value']}")
        lines += [f"- `{k}={v}`" for k, v in (results.get("best_params") or {}).items()]
    for solution in results.get("solutions") or []:  # multi-objective: the Pareto front
        lines.append(f"- values {solution.get('values')}: {solution.get('params')}")
    return lines


def _cells(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _pm(column: str, mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    if std is None:
        return format_number(column, mean)
    return f"{format_number(column, mean)} ± {format_number(column, std)}"


def format_number(column: str, value: float | None) -> str:
    """Human-readable numbers: losses with 4 decimals, counts with k/M/G, MFU in percent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in ("best", "final"):
        return f"{value:.4f}"
    if column == "mfu":
        return f"{100 * value:.2f}%"
    if column == "flops":
        return f"{value:.3g}"
    if column in ("wall_s", "max_memory_gb"):
        return f"{value:.1f}"
    if column == "steps":
        return f"{value:.0f}"
    return _si(value)


def _si(value: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
