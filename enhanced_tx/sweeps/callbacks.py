"""Hydra callback configured in conf/hydra/default.yaml (``hydra.callbacks.sweep``).

- Before a run or a multirun: a run folder (`hydra.run.dir`) or sweep folder (`hydra.sweep.dir`) that cannot be
  created or written, or that is a file, is a one-line error instead of Hydra's traceback.
- Before a multirun: a persistent Optuna storage with packages optuna 2.x cannot use is a one-line error
  (instead of an AssertionError from deep inside optuna).
- After a multirun: a table of the jobs (overrides, monitored value, status), the best job and the commands
  for the report and for generating from it (summary.py); then one line per failed job (read from the
  ``FAILED.json`` files under the sweep folder, so it works for every launcher: basic, joblib, submitit) and
  exit status 1 when any job failed.

Runs in the launching process; imports neither torch nor the training code before the sweep (the final table
reads the monitors' directions from the training layer).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from enhanced_tx.errors import ConfigError
from enhanced_tx.writable import check_writable_folder

from .failures import find_failures

# optuna<3 (pinned by hydra-optuna-sweeper) works with these only; `pip install -e ".[optuna-storage]"`
STORAGE_REQUIREMENTS = {"sqlalchemy": (2, 0), "alembic": (1, 14)}  # package: first incompatible version


class SweepCallback(Callback):
    """Checks around a run or a multirun; configured for every training command."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _writable_or_exit(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _writable_or_exit(config, "hydra.sweep.dir")
        problem = storage_problem(OmegaConf.select(config, "hydra.sweeper.storage"))
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        _print_summary(sweep_dir, config)
        failures = find_failures(sweep_dir)
        if not failures:
            return
        jobs = count_jobs(sweep_dir)
        for failure in failures:
            print(f"FAILED {failure.describe()}  [{failure.job_dir}]", file=sys.stderr)
        print(
            f"{len(failures)} of {jobs} jobs failed; compare: python -m enhanced_tx.tracking.report {sweep_dir}",
            file=sys.stderr,
        )
        raise SystemExit(1)  # a BaseException: Hydra's callback runner does not swallow it


def _print_summary(sweep_dir: Path, config: DictConfig) -> None:
    """The end-of-sweep table; a sweep whose folders cannot be read still ends with its failure lines."""
    from .summary import sweep_summary

    try:  # the generate hint uses the best job's own first sample prompt (its sample_prompts= if given)
        lines = sweep_summary(sweep_dir)
    except Exception as error:  # noqa: BLE001 - a summary must never turn a finished sweep into a crash
        lines = [f"(no sweep summary: {type(error).__name__}: {error})"]
    print("\n".join(lines), flush=True)


def _writable_or_exit(config: DictConfig, key: str) -> None:
    """Hydra creates this folder next, and a failure there is a traceback: check it first, in one line."""
    try:
        check_writable_folder(str(OmegaConf.select(config, key)), key)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def count_jobs(sweep_dir: Path) -> int:
    """Job folders under a sweep: those holding Hydra's ``.hydra/`` record."""
    return sum(1 for _ in sweep_dir.rglob(".hydra/overrides.yaml"))


def storage_problem(storage: Any) -> str | None:
    """Why an Optuna storage URL cannot work with the installed packages, or None."""
    if not isinstance(storage, str) or "://" not in storage:
        return None  # null (in memory) or a storage object configured with _target_
    found = []
    for package, (major, minor) in STORAGE_REQUIREMENTS.items():
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            found.append(f"{package} missing")
            continue
        if _version_tuple(version) >= (major, minor):
            found.append(f"{package} {version}")
    if not found:
        return None
    return (
        f"hydra.sweeper.storage={storage} needs sqlalchemy<2 and alembic<1.14 with optuna 2.x "
        f"(found {', '.join(found)}): pip install -e '.[optuna-storage]', or leave storage null (in memory)"
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
