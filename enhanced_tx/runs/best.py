"""``run=best``: the job with the best monitored value in the newest sweep (or a named one)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tracking.report_table import build_rows
from enhanced_tx.tracking.sweep_reader import JobRecord

from .catalog import find_jobs, last_written, sweep_dir_of

DEFAULT_MONITOR = "val/loss"


@dataclass(frozen=True)
class BestRun:
    job: JobRecord
    label: str  # the job's swept overrides
    metric: str
    value: float
    sweep_dir: Path
    candidates: int  # jobs of the sweep that had weights and the metric

    def describe(self) -> str:
        return (
            f"run=best: job {self.job.name} ({self.label}) with {self.metric} {self.value:.4f}, best of "
            f"{self.candidates} in {self.sweep_dir} -> {self.job.job_dir}"
        )


def newest_sweep(roots: Sequence[str | os.PathLike]) -> Path:
    """The sweep folder whose jobs wrote last, among the sweeps under ``roots``."""
    newest: dict[Path, float] = {}
    for job in find_jobs([r for r in roots if Path(r).is_dir()]):
        sweep = sweep_dir_of(job)
        if sweep is not None:
            newest[sweep] = max(newest.get(sweep, 0.0), last_written(job))
    if not newest:
        searched = ", ".join(str(Path(r).resolve()) for r in roots)
        raise ConfigError(f"run=best found no sweep under {searched}; run one (run_train.py -m ...) or pass sweep=DIR")
    return max(newest, key=newest.__getitem__)


def best_run(
    roots: Sequence[str | os.PathLike], sweep: str | os.PathLike | None = None, metric: str | None = None
) -> BestRun:
    """The finished job with weights and the best ``metric`` (default: the jobs' ``trainer.monitor``)."""
    sweep_dir = Path(sweep) if sweep else newest_sweep(roots)
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep={sweep_dir} is not a folder; pass the multirun/DATE/TIME folder of a sweep")
    jobs = find_jobs([sweep_dir])
    metric = metric or _monitor(jobs)
    mode = "max" if _higher_is_better(metric) else "min"
    with_weights = [j for j in jobs if j.status == "ok" and _has_weights(j)]
    rows = [r for r in build_rows(with_weights, metric, mode) if _finite(r.numbers["best"])]
    if not rows:
        raise ConfigError(
            f"run=best: no finished job with weights and {metric} in {sweep_dir} ({len(jobs)} jobs); "
            "pass run=FOLDER or another sweep=DIR"
        )
    top = rows[0]
    return BestRun(top.job, top.label, metric, float(top.numbers["best"]), sweep_dir, len(rows))


def _monitor(jobs: Sequence[JobRecord]) -> str:
    for job in jobs:
        monitor = (job.config.get("trainer") or {}).get("monitor")
        if isinstance(monitor, str):
            return monitor
    return DEFAULT_MONITOR


def _higher_is_better(metric: str) -> bool:
    from enhanced_tx.training.monitor import MONITORS  # the trainer's table of monitors and directions

    return MONITORS.get(metric, False)


def _has_weights(job: JobRecord) -> bool:
    run = RunFolder(job.job_dir)
    return run.weights.is_file() or (run.checkpoints_dir.is_dir() and any(run.checkpoints_dir.glob("*.pt")))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
