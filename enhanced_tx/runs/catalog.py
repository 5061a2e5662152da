"""Find the run folders under a folder: single runs (outputs/DATE/TIME) and sweep jobs (multirun/.../N_...)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tracking.sweep_reader import JobRecord, read_job


def find_jobs(roots: Iterable[str | os.PathLike]) -> list[JobRecord]:
    """Every run folder under ``roots`` (a folder may itself be a run), oldest first; unreadable ones skipped."""
    folders: dict[Path, None] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise EnhancedTxError(f"no folder {root}: pass a run folder, a sweep folder, outputs/ or multirun/")
        if is_run(root):
            folders[root.resolve()] = None
        for marker in sorted(root.rglob(".hydra/overrides.yaml")):
            folders[marker.parent.parent.resolve()] = None
    jobs = []
    for folder in folders:
        try:
            jobs.append(read_job(folder))
        except (OSError, ValueError):
            continue
    return sorted(jobs, key=lambda j: (last_written(j), str(j.job_dir)))


def is_run(folder: Path) -> bool:
    run = RunFolder(folder)
    return run.overrides.is_file() or run.resolved_config.is_file()


def last_written(job: JobRecord) -> float:
    """When the run last wrote its metrics (else its folder's time): what "newest" means here."""
    run = RunFolder(job.job_dir)
    for path in (run.metrics, run.summary, run.root):
        if path.exists():
            return path.stat().st_mtime
    return 0.0


def sweep_dir_of(job: JobRecord) -> Path | None:
    """The sweep folder of a sweep job (the folder above a numbered job), None for a single run."""
    return job.job_dir.parent if job.num is not None else None


def resolve_one(path: str | os.PathLike) -> JobRecord:
    """One run folder, or a one-line error saying what the folder is instead."""
    folder = Path(path)
    if not folder.is_dir():
        raise EnhancedTxError(f"no run folder {folder}: pass the folder run_train.py printed")
    if not is_run(folder):
        inside = len(find_jobs([folder]))
        hint = f"it holds {inside} runs: use `list {folder}` or `compare {folder}`" if inside else "it holds no run"
        raise EnhancedTxError(f"{folder} is not a run folder ({hint})")
    return read_job(folder)
