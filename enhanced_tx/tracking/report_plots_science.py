"""Plots of the conclusions: per-arm curves with a min-max band over seeds, a forest plot of the differences
to the baseline, loss against the tuned key per arm, and the scaling fits on log axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .report_arms import belongs, usable
from .report_options import ReportOptions
from .report_plots import figure
from .report_scaling import PREDICT_AT, ScalingResult
from .report_science import Science
from .report_stats import CONFIDENCE
from .report_table import Row


def plot_science(out: Path, rows: Sequence[Row], science: Science, options: ReportOptions) -> list[str]:
    """Write the plots into ``out``; returns their file names."""
    slug = options.metric.replace("/", "_")
    written = []
    if science.replicated and _bands(out / f"{slug}_bands.png", rows, options.metric, science):
        written.append(f"{slug}_bands.png")
    if science.replicated and science.comparisons:
        _forest(out / f"{slug}_forest.png", science, options.metric)
        written.append(f"{slug}_forest.png")
    if science.tuned:
        _tuned(out / f"{slug}_vs_{options.tune}.png", science, options)
        written.append(f"{slug}_vs_{options.tune}.png")
    if science.scaling is not None and science.scaling.fits:
        _scaling(out / f"{slug}_scaling.png", science.scaling, options.metric)
        written.append(f"{slug}_scaling.png")
    return written


def _bands(path: Path, rows: Sequence[Row], metric: str, science: Science) -> bool:
    """Mean curve per arm over its seeds, with the min-max band; tuned: only the seeds at the arm's best."""
    curves = {
        arm.label: [dict(r.job.series(metric)) for r in rows if usable(r, "final") and belongs(r, arm)]
        for arm in science.arms
    }
    curves = {label: seeds for label, seeds in curves.items() if any(seeds)}
    if not curves:
        return False
    fig = figure(10.0, 5.0)
    ax = fig.add_subplot()
    for label, seeds in curves.items():
        steps = sorted({s for seed in seeds for s in seed})
        table = np.array([[seed.get(s, np.nan) for s in steps] for seed in seeds])
        line = ax.plot(steps, np.nanmean(table, axis=0), label=f"{label} (n={len(seeds)})")[0]
        ax.fill_between(steps, np.nanmin(table, axis=0), np.nanmax(table, axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, band = min-max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return True


def _forest(path: Path, science: Science, metric: str) -> None:
    comparisons = science.comparisons
    fig = figure(8.0, 1.2 + 0.5 * len(comparisons))
    ax = fig.add_subplot()
    ys = np.arange(len(comparisons))[::-1]
    for y, c in zip(ys, comparisons, strict=True):
        color = "tab:blue" if c.resolved else "tab:gray"
        if not math.isnan(c.low):
            ax.plot([c.low, c.high], [y, y], color=color, linewidth=2)
        ax.plot([c.difference], [y], "o", color=color)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(ys, [f"{c.arm.label} (n={c.arm.n})" for c in comparisons], fontsize="small")
    base = science.baseline.label if science.baseline else "baseline"
    ax.set_xlabel(f"{metric} difference to {base} ({100 * CONFIDENCE:.0f}% CI, Welch)")
    ax.set_title("differences to the baseline (gray: interval contains 0)")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)


def _tuned(path: Path, science: Science, options: ReportOptions) -> None:
    fig = figure(8.0, 5.0)
    ax = fig.add_subplot()
    for t in science.tuned or []:
        grid = sorted(t.curve, key=float)
        xs = [float(v) for v in grid]
        means = [t.curve[v].mean for v in grid]
        errors = [t.curve[v].std if t.curve[v].n > 1 else 0.0 for v in grid]
        line = ax.errorbar(xs, means, yerr=errors, marker="o", capsize=4, label=t.label)
        ax.plot([float(t.best_value)], [t.best.mean], "*", markersize=14, color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel(options.tune)
    ax.set_ylabel(f"{options.value} {options.metric}")
    ax.set_title(f"{options.metric} vs {options.tune} per arm (mean ± std over seeds; * best)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def _scaling(path: Path, scaling: ScalingResult, metric: str) -> None:
    fig = figure(8.0, 5.0)
    ax = fig.add_subplot()
    high = PREDICT_AT[-1] * scaling.largest_compute
    for fit in scaling.fits:
        points = ax.scatter(fit.compute, fit.loss, s=18, label=f"{fit.arm}: alpha={fit.alpha:.3g}")
        color = points.get_facecolor()[0]
        measured = np.geomspace(min(fit.compute), scaling.largest_compute, 100)
        ahead = np.geomspace(scaling.largest_compute, high, 100)
        ax.plot(measured, [fit.predict(c) for c in measured], color=color)
        ax.plot(ahead, [fit.predict(c) for c in ahead], "--", color=color)
    ax.axvline(scaling.largest_compute, color="gray", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} = E + A C^-alpha (dashed: extrapolation)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
