"""``FAILED.json``: the marker a failed sweep job leaves in its folder for the end-of-sweep check and the report."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from enhanced_tx.runfolder import RunFolder

FAILURE_FILE = RunFolder(".").failed.name


@dataclass(frozen=True)
class JobFailure:
    """One failed job: its folder, Hydra job number, overrides and the one-line error."""

    job_dir: Path
    error: str
    job_num: int | None = None
    overrides: str | None = None

    def describe(self) -> str:
        who = f"job {self.job_num}" if self.job_num is not None else f"job {self.job_dir.name}"
        what = f" ({self.overrides})" if self.overrides else ""
        return f"{who}{what} failed: {self.error}"


def record_failure(
    output_dir: str | os.PathLike, error: str, job_num: int | None = None, overrides: str | None = None
) -> Path:
    """Write ``<output_dir>/FAILED.json`` (error line, job number, overrides, time); returns its path."""
    path = Path(output_dir) / FAILURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"error": error, "job_num": job_num, "overrides": overrides, "time": time.time()}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def clear_failure(output_dir: str | os.PathLike) -> None:
    """Remove a stale marker when a job starts again in the same folder."""
    (Path(output_dir) / FAILURE_FILE).unlink(missing_ok=True)


def read_failure(job_dir: str | os.PathLike) -> JobFailure | None:
    """The failure recorded in ``job_dir``, or None. An unreadable marker still counts as a failure."""
    path = Path(job_dir) / FAILURE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    num = record.get("job_num")
    return JobFailure(
        job_dir=Path(job_dir),
        error=str(record.get("error") or "unknown error (unreadable FAILED.json)"),
        job_num=num if isinstance(num, int) else None,
        overrides=record.get("overrides") or None,
    )


def find_failures(sweep_dir: str | os.PathLike) -> list[JobFailure]:
    """Every failed job under a sweep folder, by job number (then folder name)."""
    root = Path(sweep_dir)
    found = [read_failure(path.parent) for path in root.rglob(FAILURE_FILE)] if root.is_dir() else []
    failures = [f for f in found if f is not None]
    return sorted(failures, key=lambda f: (f.job_num is None, f.job_num or 0, str(f.job_dir)))
