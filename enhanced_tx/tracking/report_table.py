"""The comparison table of a sweep: one row per job, sorted by the metric, and seed-replicate groups.

Jobs whose overrides differ only by ``seed`` are replicates of one configuration: a group row holds the
mean, the sample standard deviation and the number of seeds of each number.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .sweep_reader import JobRecord

SEED_KEY = "seed"
# (column, heading) of the numbers compared per job, in table order; "best" is the sweep's metric
NUMBER_COLUMNS = (
    ("best", "best"),
    ("final", "final"),
    ("params", "params"),
    ("steps", "steps"),
    ("tokens", "tokens"),
    ("flops", "FLOPs"),
    ("mfu", "MFU"),
    ("tokens_per_s", "tokens/s"),
    ("max_memory_gb", "max mem GB"),
    ("wall_s", "wall s"),
)
GROUPED_COLUMNS = ("best", "final", "tokens_per_s", "mfu", "wall_s")


@dataclass
class Row:
    """One job of the table."""

    job: JobRecord
    label: str  # the swept overrides of this job ("norm=rmsnorm,positional=rope"), or "default"
    config_label: str  # the same without the seed: the seed-replicate group
    swept: dict[str, str]  # swept key -> this job's value
    numbers: dict[str, float | None]

    @property
    def status(self) -> str:
        return self.job.status


@dataclass
class Group:
    """The seed replicates of one configuration."""

    label: str
    rows: list[Row]
    swept: dict[str, str]
    mean: dict[str, float | None] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Seeds that finished and have the metric."""
        return sum(1 for r in self.rows if r.status == "ok" and r.numbers["best"] is not None)

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.rows if r.status == "failed")


def swept_keys(jobs: Sequence[JobRecord]) -> list[str]:
    """Override keys whose value is not the same in every job (a key missing in some jobs counts)."""
    maps = [job.override_map() for job in jobs]
    keys = sorted({k for m in maps for k in m})
    return [k for k in keys if len({m.get(k) for m in maps}) > 1]


def job_numbers(job: JobRecord, metric: str, mode: str = "min") -> dict[str, float | None]:
    """The compared numbers of one job (None where it logged nothing)."""
    values = job.values(metric)
    best = (min(values) if mode == "min" else max(values)) if values else _summary_best(job, metric)
    train_seconds = (job.last("perf/train_minutes") or 0.0) * 60.0
    tokens = job.last("perf/tokens")
    start, end = job.times()
    rates = job.values("perf/tokens_per_s")
    mfus = job.values("perf/mfu")
    memory = job.values("perf/max_memory_gb")
    steps = [int(r["step"]) for r in job.metrics if isinstance(r.get("step"), int)]
    params = job.summary.get("params/total")
    return {
        "best": best,
        "final": values[-1] if values else None,
        "params": float(params) if isinstance(params, int | float) else None,
        "steps": float(max(steps)) if steps else None,
        "tokens": tokens,
        "flops": job.last("perf/flops"),
        # whole-run throughput where the run says how long it trained; else the mean of the logged windows
        "mfu": statistics.fmean(mfus) if mfus else None,
        "tokens_per_s": tokens / train_seconds if tokens and train_seconds > 0 else _mean(rates),
        "max_memory_gb": max(memory) if memory else None,
        "wall_s": end - start if start is not None and end is not None else None,
    }


def build_rows(jobs: Sequence[JobRecord], metric: str = "val/loss", mode: str = "min") -> list[Row]:
    """Rows sorted by the metric (best first); jobs without it (failed, incomplete) last, by job number."""
    keys = swept_keys(jobs)
    rows = []
    for job in jobs:
        overrides = job.override_map()
        swept = {k: overrides.get(k, "-") for k in keys}
        label = ",".join(f"{k}={short_value(v)}" for k, v in swept.items()) or job.job_dir.name
        config = ",".join(f"{k}={short_value(v)}" for k, v in swept.items() if k != SEED_KEY) or "all"
        rows.append(Row(job, label, config, swept, job_numbers(job, metric, mode)))
    return sort_rows(rows, mode)


def short_value(value: str) -> str:
    """A sampled float (Optuna: ``0.0026512259742974293``) shown with 4 significant digits; others as they are."""
    if "." not in value and "e" not in value.lower():
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}"


def sort_rows(rows: Iterable[Row], mode: str = "min") -> list[Row]:
    sign = 1.0 if mode == "min" else -1.0

    def key(row: Row) -> tuple:
        best = row.numbers["best"]
        usable = row.status != "failed" and best is not None
        return (not usable, sign * best if usable else 0.0, row.job.num if row.job.num is not None else math.inf)

    return sorted(rows, key=key)


def seed_groups(rows: Sequence[Row], mode: str = "min") -> list[Group]:
    """Rows grouped by configuration (overrides without the seed), groups sorted by their mean metric."""
    groups: dict[str, Group] = {}
    for row in rows:
        swept = {k: v for k, v in row.swept.items() if k != SEED_KEY}
        groups.setdefault(row.config_label, Group(row.config_label, [], swept)).rows.append(row)
    for group in groups.values():
        usable = [r for r in group.rows if r.status == "ok"]
        for column in GROUPED_COLUMNS:
            values = [r.numbers[column] for r in usable if r.numbers[column] is not None]
            group.mean[column] = statistics.fmean(values) if values else None
            group.std[column] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    sign = 1.0 if mode == "min" else -1.0
    return sorted(groups.values(), key=lambda g: (g.mean["best"] is None, sign * (g.mean["best"] or 0.0), g.label))


def has_replicates(groups: Sequence[Group]) -> bool:
    return any(len(g.rows) > 1 for g in groups)


def write_csv(path: Path, rows: Sequence[Row], metric: str) -> None:
    """One line per job: identity, swept values, group choices, overrides, numbers, status, error."""
    keys = list(rows[0].swept) if rows else []
    header = ["job", "status", "label", *keys, "seed", "choices", "overrides"]
    header += [_csv_name(column, metric) for column, _ in NUMBER_COLUMNS] + ["error", "dir"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            job = row.job
            choices = " ".join(f"{k}={v}" for k, v in sorted(job.choices.items()))
            writer.writerow(
                [
                    job.num,
                    row.status,
                    row.label,
                    *(row.swept[k] for k in keys),
                    job.seed,
                    choices,
                    " ".join(job.overrides),
                ]
                + [_csv_value(row.numbers[column]) for column, _ in NUMBER_COLUMNS]
                + [job.error or "", job.job_dir.name]
            )


def write_groups_csv(path: Path, groups: Sequence[Group], metric: str) -> None:
    keys = list(groups[0].swept) if groups else []
    header = ["config", *keys, "n_seeds", "n_failed"]
    for column in GROUPED_COLUMNS:
        header += [f"{_csv_name(column, metric)}_mean", f"{_csv_name(column, metric)}_std"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for g in groups:
            numbers = [_csv_value(x) for column in GROUPED_COLUMNS for x in (g.mean[column], g.std[column])]
            writer.writerow([g.label, *(g.swept.get(k, "-") for k in keys), g.n, g.n_failed, *numbers])


def _csv_name(column: str, metric: str) -> str:
    slug = metric.replace("/", "_")
    return {"best": f"best_{slug}", "final": f"final_{slug}"}.get(column, column)


def _csv_value(value: float | None) -> str:
    return "" if value is None else repr(value)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _summary_best(job: JobRecord, metric: str) -> float | None:
    value = job.summary.get("val/best_" + metric.removeprefix("val/"))
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
