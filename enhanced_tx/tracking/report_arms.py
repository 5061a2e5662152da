"""Arms of an ablation: the jobs of a sweep grouped by their swept values, leaving out seed (and tuned) keys."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from enhanced_tx.errors import ConfigError

from .report_options import VALUE_COLUMNS
from .report_stats import ArmStats
from .report_table import SEED_KEY, Row, short_value


def usable(row: Row, value: str) -> bool:
    number = row.numbers.get(value)
    return row.status == "ok" and number is not None and math.isfinite(number)


def arm_swept(row: Row, leave_out: Collection[str]) -> dict[str, str]:
    return {k: v for k, v in row.swept.items() if k not in leave_out and k != SEED_KEY}


def arm_label(swept: dict[str, str]) -> str:
    return ",".join(f"{k}={short_value(v)}" for k, v in swept.items()) or "all"


def group_arms(rows: Sequence[Row], value: str = "final", leave_out: Collection[str] = ()) -> list[ArmStats]:
    """One `ArmStats` per arm, in the order of the arms' first job (so the first arm is the sweep's first)."""
    if value not in VALUE_COLUMNS:
        raise ConfigError(f"report.value={value} must be one of {', '.join(VALUE_COLUMNS)}")
    arms: dict[str, tuple[dict[str, str], list[Row]]] = {}
    for row in in_job_order(rows):
        swept = arm_swept(row, leave_out)
        arms.setdefault(arm_label(swept), (swept, []))[1].append(row)
    return [
        ArmStats(label, tuple(r.numbers[value] for r in members if usable(r, value)), swept)
        for label, (swept, members) in arms.items()
    ]


def in_job_order(rows: Sequence[Row]) -> list[Row]:
    """Rows by job number (single runs, without one, last by folder): the order the sweep ran them in."""
    return sorted(rows, key=lambda r: (r.job.num is None, r.job.num or 0, str(r.job.job_dir)))


def belongs(row: Row, arm: ArmStats) -> bool:
    """The row is one of the arm's jobs (the arm names a subset of the row's swept values)."""
    return all(row.swept.get(k) == v for k, v in arm.swept.items())
