"""``report_stats.csv``: one line per arm with its interval and its comparison with the baseline."""

from __future__ import annotations

import csv
from pathlib import Path

from .report_science import Science
from .report_stats import ArmStats, Comparison

HEADER = ["arm", "n", "mean", "std", "ci_low", "ci_high", "diff", "diff_low", "diff_high", "p_welch", "seeds_needed"]
HEADER += ["verdict"]


def stats_rows(science: Science, mode: str = "min") -> list[list]:
    """The table's rows (also logged to W&B): numbers as floats, NaN where not computable."""
    by_arm = {c.arm.label: c for c in science.comparisons}
    return [_row(arm, by_arm.get(arm.label), arm is science.baseline, mode) for arm in science.arms]


def write_stats_csv(path: Path, science: Science, mode: str = "min") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(stats_rows(science, mode))
    return path


def _row(arm: ArmStats, comparison: Comparison | None, is_baseline: bool, mode: str) -> list:
    low, high = arm.interval()
    cells = [arm.label, arm.n, arm.mean, arm.std, low, high]
    if comparison is None:
        return cells + ["", "", "", "", "", "baseline" if is_baseline else ""]
    c = comparison
    return cells + [c.difference, c.low, c.high, c.p_value, c.seeds_needed or "", c.verdict(mode)]
