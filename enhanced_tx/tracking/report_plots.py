"""PNG plots of a sweep: metric curves of all jobs (vs step, tokens, FLOPs) and the best metric per choice.

Uses matplotlib's object API (`Figure`, no pyplot state), so it works headless and inside other programs.
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .report_table import SEED_KEY, Group, Row, has_replicates, short_value

X_AXES = {"step": None, "tokens": "perf/tokens", "flops": "perf/flops"}  # x axis -> logged cumulative counter
MAX_CATEGORIES = 8  # a numeric key with more distinct values is drawn as a scatter plot
TRAIN_METRIC = "train/loss"  # drawn against steps beside the validation metric
MIN_READABLE_POINTS = 3  # a curve with fewer points shows no trend: the report says so


def plot_report(
    out_dir: Path, rows: Sequence[Row], groups: Sequence[Group], metric: str, mode: str, optuna: bool = False
) -> list[str]:
    """Write the plots into ``out_dir``; returns their file names."""
    slug = metric.replace("/", "_")
    written = []
    for axis, counter in X_AXES.items():
        name = f"{slug}_vs_{axis}.png"
        if _curves(out_dir / name, rows, metric, axis, counter):
            written.append(name)
    if metric != TRAIN_METRIC and _curves(out_dir / "train_loss_vs_step.png", rows, TRAIN_METRIC, "step", None):
        written.append("train_loss_vs_step.png")
    name = f"best_{slug}_by_choice.png"
    if _by_choice(out_dir / name, rows, metric):
        written.append(name)
    if has_replicates(groups):
        name = f"best_{slug}_by_config.png"
        _by_config(out_dir / name, groups, metric)
        written.append(name)
    if optuna:
        name = "optuna_history.png"
        if _history(out_dir / name, rows, metric, mode):
            written.append(name)
    return written


def sparse_curves(rows: Sequence[Row], metric: str) -> list[str]:
    """Jobs whose ``metric`` curve has points but fewer than `MIN_READABLE_POINTS` (a dot, not a trend)."""
    return [
        f"{row.job.num if row.job.num is not None else row.job.job_dir.name}: {row.label} "
        f"({len(row.job.series(metric))} point(s))"
        for row in sorted(rows, key=lambda r: (r.job.num is None, r.job.num or 0, r.job.job_dir.name))
        if 0 < len(row.job.series(metric)) < MIN_READABLE_POINTS
    ]


def figure(width: float = 8.0, height: float = 5.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _curves(path: Path, rows: Sequence[Row], metric: str, axis: str, counter: str | None) -> bool:
    fig = figure(11.0, 5.5)
    ax = fig.add_subplot()
    drawn = 0
    for row in rows:
        points = row.job.series(metric)
        if not points:
            continue
        steps = np.array([s for s, _ in points], dtype=float)
        values = np.array([v for _, v in points])
        if counter is None:
            x = steps
        else:
            logged = row.job.series(counter)
            if not logged:
                continue
            # evaluations and training logs need not share steps: read the counter at the eval steps
            known_steps = np.array([0.0] + [s for s, _ in logged])
            known = np.array([0.0] + [v for _, v in logged])
            x = np.interp(steps, known_steps, known)
        style = "--" if row.status != "ok" else "-"
        label = textwrap.fill(f"{row.job.num}: {row.label.replace(',', ', ')}", 48, subsequent_indent="   ")
        ax.plot(x, values, style, marker="o", markersize=3, label=label)
        drawn += 1
    if not drawn:
        return False
    ax.set_xlabel({"step": "optimizer step", "tokens": "tokens (source + target)", "flops": "model FLOPs"}[axis])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {axis}")
    ax.grid(alpha=0.3)
    if axis == "flops":
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.legend(fontsize="x-small" if drawn > 8 else "small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110)
    return True


def _by_choice(path: Path, rows: Sequence[Row], metric: str) -> bool:
    """One panel per swept key: every job's best metric (dots), mean ± std per value (error bars)."""
    keys = [k for k in (rows[0].swept if rows else {}) if k != SEED_KEY]
    if not keys or not any(_usable(r) for r in rows):
        return False
    cols = min(len(keys), 3)
    lines = -(-len(keys) // cols)
    fig = figure(4.2 * cols, 3.6 * lines)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(lines, cols, i + 1)
        by_value: dict[str, list[float]] = {}
        failed: dict[str, int] = {}
        for row in rows:
            by_value.setdefault(row.swept[key], [])
            if _usable(row):
                by_value[row.swept[key]].append(row.numbers["best"])
            elif row.status == "failed":
                failed[row.swept[key]] = failed.get(row.swept[key], 0) + 1
        numeric = _as_numbers(list(by_value))
        singles = len(by_value) > 2 and all(len(v) <= 1 for v in by_value.values())
        continuous = len(by_value) > MAX_CATEGORIES or singles
        if numeric is not None and continuous:  # e.g. Optuna's sampled floats: value on the x axis
            xs = [numeric[v] for v in by_value for _ in by_value[v]]
            ax.scatter(xs, [y for v in by_value for y in by_value[v]], s=14)
            if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            ax.set_xlabel(key, fontsize="small")
        else:
            order = sorted(by_value, key=lambda v: numeric[v]) if numeric is not None else sorted(by_value)
            _points_with_error_bars(ax, [by_value[v] for v in order])
            labels = [
                f"{short_value(v)}\n(n={len(by_value[v])}" + (f", {failed[v]} failed)" if v in failed else ")")
                for v in order
            ]
            ax.set_xticks(range(len(order)), labels, fontsize="small")
            ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(key, fontsize="medium")
        ax.set_ylabel(f"best {metric}")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"best {metric} by swept choice (dots: jobs; bars: mean ± std)")
    fig.savefig(path, dpi=110)
    return True


def _by_config(path: Path, groups: Sequence[Group], metric: str) -> None:
    """Seed replicates: per configuration every seed (dots) and mean ± std over the seeds (error bars)."""
    fig = figure(max(6.0, 0.6 * len(groups) + 3.0), 5.0)
    ax = fig.add_subplot()
    _points_with_error_bars(ax, [[r.numbers["best"] for r in g.rows if _usable(r)] for g in groups])
    ax.set_xticks(
        range(len(groups)), [f"{g.label}\n(n={g.n})" for g in groups], rotation=30, ha="right", fontsize="x-small"
    )
    ax.set_ylabel(f"best {metric}")
    ax.set_title(f"best {metric} per configuration (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


def _points_with_error_bars(ax, columns: Sequence[Sequence[float]]) -> None:
    """Column i at x=i: its values as small dots, their mean ± sample std as a marker with error bars."""
    for x, values in enumerate(columns):
        if not values:
            continue
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, s=12, color="tab:gray", alpha=0.7, zorder=2)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        ax.errorbar([x], [statistics.fmean(values)], yerr=[std], fmt="o", color="tab:blue", capsize=6, zorder=3)


def _usable(row: Row) -> bool:
    return row.status == "ok" and row.numbers["best"] is not None


def _history(path: Path, rows: Sequence[Row], metric: str, mode: str) -> bool:
    """Optuna: each trial's best metric in trial order, and the best so far."""
    trials = sorted(
        (r.job.num, r.numbers["best"])
        for r in rows
        if r.status == "ok" and r.numbers["best"] is not None and r.job.num is not None
    )
    if not trials:
        return False
    nums = [n for n, _ in trials]
    values = [v for _, v in trials]
    best = np.minimum.accumulate(values) if mode == "min" else np.maximum.accumulate(values)
    fig = figure()
    ax = fig.add_subplot()
    ax.scatter(nums, values, s=16, label="trial")
    ax.step(nums, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial (job number)")
    ax.set_ylabel(f"best {metric}")
    ax.set_title("Optuna search")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    return True


def _as_numbers(values: list[str]) -> dict[str, float] | None:
    try:
        return {v: float(v) for v in values}
    except ValueError:
        return None
