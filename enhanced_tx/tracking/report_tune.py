"""Tuned ablations: each arm compared at its own best value of a tuned key (e.g. ``optimizer.lr``).

A shared learning rate favours the arm it happens to suit; a grid of rates per arm, each arm read at its
best rate (mean over seeds), removes that bias. A best rate at the edge of the grid means the grid may
not hold the arm's optimum: widen it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from enhanced_tx.errors import ConfigError

from .report_arms import arm_label, arm_swept, in_job_order, usable
from .report_stats import ArmStats
from .report_table import Row


@dataclass(frozen=True)
class TunedArm:
    """One arm across the grid of the tuned key: its stats at every grid value and at its best one."""

    label: str
    swept: dict[str, str]
    curve: dict[str, ArmStats]  # grid value (as written in the overrides) -> the seeds at that value
    best_value: str
    at_edge: bool  # the best value is the smallest or largest of the grid

    @property
    def best(self) -> ArmStats:
        return self.curve[self.best_value]


def tune_arms(rows: Sequence[Row], key: str, value: str = "final", mode: str = "min") -> list[TunedArm]:
    """Arms (swept keys without the seed and ``key``), each at its best value of ``key`` (by the seed mean)."""
    if rows and key not in rows[0].swept:
        swept = ", ".join(rows[0].swept) or "none"
        raise ConfigError(f"report.tune={key} is not a swept key of this sweep (swept: {swept}); sweep it first")
    grid = sorted({r.swept[key] for r in rows}, key=_number)
    if any(math.isinf(_number(v)) or _number(v) <= 0 for v in grid):
        raise ConfigError(f"report.tune={key} needs positive numbers (a log-spaced grid); this sweep has {grid}")
    arms: dict[str, tuple[dict[str, str], dict[str, list[float]]]] = {}
    for row in in_job_order(rows):
        swept = arm_swept(row, {key})
        _, by_value = arms.setdefault(arm_label(swept), (swept, {}))
        values = by_value.setdefault(row.swept[key], [])
        if usable(row, value):
            values.append(row.numbers[value])
    sign = 1.0 if mode == "min" else -1.0
    tuned = []
    for label, (swept, by_value) in arms.items():
        curve = {
            v: ArmStats(arm_label({**swept, key: v}), tuple(by_value[v]), {**swept, key: v})
            for v in grid
            if by_value.get(v)
        }
        if not curve:
            continue
        best = min(curve, key=lambda v: sign * curve[v].mean)
        tuned.append(TunedArm(label, swept, curve, best, len(grid) > 1 and best in (grid[0], grid[-1])))
    return tuned


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf  # not a number: after the numbers, in the order written
