"""Read a Hydra sweep folder back: one `JobRecord` per job folder, plus what the sweeper left (Optuna results).

Only files are read (no W&B, no torch): ``.hydra/{overrides,hydra,config}.yaml``, ``config.resolved.yaml``,
``metrics.jsonl``, ``summary.json``, ``run_info.json`` and ``FAILED.json`` of each job.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from enhanced_tx.runfolder import RunFolder

from .jsonl import read_jsonl

OPTUNA_RESULTS = "optimization_results.yaml"
_NUMBERED = re.compile(r"^(\d+)_")


@dataclass
class JobRecord:
    """What one sweep job did, from its folder."""

    job_dir: Path
    num: int | None
    overrides: list[str]
    choices: dict[str, str]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    started: float | None  # epoch seconds (run_info.json)
    error: str | None  # from FAILED.json
    finished: bool  # the run got to its end (final summary or weights written)
    running: bool = False  # a live process holds the folder's writer lock

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        if self.finished:
            return "ok"
        return "running" if self.running else "incomplete"

    @property
    def name(self) -> str:
        """The job number in a sweep; a single run (no number) by its folder name."""
        return str(self.num) if self.num is not None else self.job_dir.name

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def override_map(self) -> dict[str, str]:
        """``key -> value`` of the job's overrides (``+key``/``~key`` keep their prefix in the key)."""
        pairs = (item.split("=", 1) for item in self.overrides)
        return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}

    def series(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of every logged ``key`` with a finite value."""
        return [
            (int(r["step"]), float(r[key])) for r in self.metrics if _finite(r.get(key)) and r.get("step") is not None
        ]

    def last(self, key: str) -> float | None:
        values = [float(r[key]) for r in self.metrics if _finite(r.get(key))]
        return values[-1] if values else None

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.metrics if _finite(r.get(key))]

    def times(self) -> tuple[float | None, float | None]:
        """Start (run_info.json, else the first metric line) and end (the last metric line) in epoch seconds."""
        stamps = [float(r["time"]) for r in self.metrics if _finite(r.get("time"))]
        start = self.started if self.started is not None else (stamps[0] if stamps else None)
        return start, (stamps[-1] if stamps else None)


@dataclass
class Sweep:
    """A sweep folder: its jobs (by job number) and, for Optuna sweeps, the sweeper's result."""

    sweep_dir: Path
    jobs: list[JobRecord]
    sweeper: str | None = None  # the sweeper's _target_ from multirun.yaml
    optuna: dict[str, Any] | None = None  # optimization_results.yaml
    notes: list[str] = field(default_factory=list)  # job folders that could not be read


def job_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """Folders under ``sweep_dir`` that hold a Hydra job record (``.hydra/overrides.yaml``)."""
    root = Path(sweep_dir)
    return sorted(p.parent.parent for p in root.rglob(".hydra/overrides.yaml"))


def read_sweep(sweep_dir: str | os.PathLike) -> Sweep:
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no sweep folder at {root}")
    jobs, notes = [], []
    for folder in job_dirs(root):
        try:
            jobs.append(read_job(folder))
        except (OSError, ValueError, yaml.YAMLError) as e:
            notes.append(f"{folder.relative_to(root)}: unreadable ({type(e).__name__}: {e})")
    jobs.sort(key=lambda j: (j.num is None, j.num if j.num is not None else 0, str(j.job_dir)))
    # the basic sweeper saves multirun.yaml, Optuna's does not: then a job's own record tells
    hydra_files = [root / "multirun.yaml", *(RunFolder(job.job_dir).hydra_record for job in jobs[:1])]
    sweeper = next(filter(None, (_sweeper_target(path) for path in hydra_files)), None)
    return Sweep(root, jobs, sweeper=sweeper, optuna=_load_yaml(root / OPTUNA_RESULTS), notes=notes)


def _sweeper_target(path: Path) -> str | None:
    hydra = (_load_yaml(path) or {}).get("hydra") or {}
    return (hydra.get("sweeper") or {}).get("_target_")


def read_job(folder: str | os.PathLike) -> JobRecord:
    run = RunFolder(folder)
    hydra = (_load_yaml(run.hydra_record) or {}).get("hydra") or {}
    overrides = _load_yaml(run.overrides) or []
    config = _load_yaml(run.resolved_config) or _load_yaml(run.hydra_config) or {}
    choices = (hydra.get("runtime") or {}).get("choices") or {}
    summary = _load_json(run.summary) or {}
    return JobRecord(
        job_dir=run.root,
        num=_job_num(hydra, run.root),
        overrides=[str(o) for o in overrides],
        choices={str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra")},
        config=config if isinstance(config, dict) else {},
        metrics=read_jsonl(run.metrics) if run.metrics.is_file() else [],
        summary=summary if isinstance(summary, dict) else {},
        started=_start_time(run),
        error=_failure(run),
        finished=any(str(k).startswith("val/best_") for k in summary) or run.weights.is_file(),
        running=run.lock_holder() is not None,
    )


def _failure(run: RunFolder) -> str | None:
    """The one-line error of FAILED.json; an unreadable marker still marks the job failed."""
    if not run.failed.is_file():
        return None
    record = _load_json(run.failed)
    error = record.get("error") if isinstance(record, dict) else None
    return str(error or "unknown error (unreadable FAILED.json)")


def _job_num(hydra: dict, folder: Path) -> int | None:
    num = (hydra.get("job") or {}).get("num")
    if isinstance(num, int):
        return num
    match = _NUMBERED.match(folder.name)
    return int(match.group(1)) if match else None


def _start_time(run: RunFolder) -> float | None:
    info = _load_json(run.run_info) or {}
    stamp = info.get("time") if isinstance(info, dict) else None
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _load_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
