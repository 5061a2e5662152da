"""A job inside a Hydra sweep: its W&B group and name, the value it returns when it fails, its CPU threads.

Everything reads Hydra's runtime config (`HydraConfig`) when there is one and does nothing without it, so
the library stays usable without Hydra (compose-API tests, notebooks).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WANDB_GROUP_MAX = 128  # W&B rejects longer group names
DEFAULT_NAME = "default"  # the name of a sweep job without overrides


def hydra_config() -> Any | None:
    """The `hydra` node of the running job, or None outside @hydra.main."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except (ImportError, ValueError):
        return None


def in_multirun(hydra: Any | None = None) -> bool:
    hydra = hydra if hydra is not None else hydra_config()
    if hydra is None:
        return False
    from hydra.types import RunMode

    return hydra.mode == RunMode.MULTIRUN


def sweep_group(sweep_dir: str | os.PathLike, cwd: str | os.PathLike | None = None) -> str:
    """The W&B group of a sweep: its folder, relative to the launch directory when inside it.

    ``multirun/2025-01-01/12-00-00`` stays as it is, so the group names the folder the report reads.
    """
    path = Path(sweep_dir)
    if path.is_absolute() and cwd is not None and path.is_relative_to(Path(cwd)):
        path = path.relative_to(Path(cwd))
    group = path.as_posix()
    return group if len(group) <= WANDB_GROUP_MAX else group[-WANDB_GROUP_MAX:]


def run_identity(group: str | None, name: str | None) -> tuple[str | None, str | None]:
    """The W&B ``(group, name)`` of this run: the configured values, else derived from Hydra.

    In a sweep the group is the sweep folder and the name the job's overrides (``default`` without any);
    a single run has no group and is named by its overrides (W&B picks a name when there are none).
    """
    hydra = hydra_config()
    if hydra is None:
        return group, name
    overrides = hydra.job.get("override_dirname") or None
    if in_multirun(hydra):
        group = group or sweep_group(hydra.sweep.dir, hydra.runtime.get("cwd"))
        name = name or overrides or DEFAULT_NAME
    else:
        name = name or overrides
    return group, name


def failed_job_value(direction: Any = None) -> float | list[float]:
    """What a failed sweep job returns: the worst value for the sweeper's direction.

    Not NaN: the Optuna sweeper (1.2/1.3 with optuna 2.x) tells NaN to the study, which rejects it, and its
    error path then crashes the whole sweep. ``+inf`` (``-inf`` when maximising) completes the trial as the
    worst one. A list of directions (multi-objective) gets one worst value each.
    """
    if direction is None:
        hydra = hydra_config()
        direction = hydra.sweeper.get("direction") if hydra is not None else None
    if direction is not None and not isinstance(direction, str) and _is_sequence(direction):
        return [_worst(d) for d in direction]
    return _worst(direction)


def _is_sequence(value: Any) -> bool:
    return hasattr(value, "__iter__") and not isinstance(value, Mapping)


def _worst(direction: Any) -> float:
    return -math.inf if str(direction or "").lower().endswith("maximize") else math.inf


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(launcher: Mapping[str, Any], cpus: int) -> int | None:
    """Torch threads for one job under ``launcher`` (Hydra's launcher config), or None to leave the default.

    joblib runs ``n_jobs`` jobs at once on this machine: each gets ``cpus // n_jobs`` (negative ``n_jobs``
    counts from the CPU count, as in joblib). submitit jobs get their ``cpus_per_task`` when it is set.
    """
    target = str(launcher.get("_target_") or "")
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = n_jobs if n_jobs > 0 else max(cpus + 1 + n_jobs, 1)
        return max(1, cpus // parallel)
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    return None


def limit_torch_threads() -> int | None:
    """Under a parallel launcher, give torch this job's share of the CPUs; returns the thread count set."""
    hydra = hydra_config()
    if hydra is None or not in_multirun(hydra):
        return None
    threads = threads_per_job(hydra.launcher, available_cpus())
    if threads is None:
        return None
    import torch

    torch.set_num_threads(threads)
    log.info("torch threads for this job: %d (launcher %s)", threads, hydra.launcher.get("_target_"))
    return threads
