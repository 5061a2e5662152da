"""The report in W&B: one run of job type ``report`` in the sweep's group, with the tables and the figures.

Offline by default, like the training runs: ``wandb sync`` the printed folder later and the comparison
sits beside the sweep's runs (same project, same group).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from enhanced_tx.errors import ConfigError

from .report_science_csv import HEADER, stats_rows
from .wandb_mode import wandb_api_key_configured

JOB_TYPE = "report"
DEFAULT_PROJECT = "enhanced-tx"
JOB_COLUMNS = ["job", "status", "label", "best", "final", "steps", "flops", "dir"]


def report_group(report: Any) -> str:
    """The jobs' W&B group: their configured ``group``, else the sweep folder as launched (see sweeps.job)."""
    for job in report.sweep.jobs:
        if job.config.get("group"):
            return str(job.config["group"])
    folder = Path(report.sweep.sweep_dir)
    if folder.is_absolute() and folder.is_relative_to(Path.cwd()):
        folder = folder.relative_to(Path.cwd())
    return folder.as_posix()[-128:]  # W&B's limit on group names


def report_tables(report: Any) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """``key -> (columns, rows)`` of what the run logs: every job, and the arms with their intervals."""
    jobs = [
        [row.job.name, row.status, row.label, *(row.numbers[c] for c in ("best", "final", "steps", "flops"))]
        + [row.job.job_dir.name]
        for row in report.rows
    ]
    tables = {"report/jobs": (JOB_COLUMNS, jobs)}
    if report.science is not None and report.science.arms:
        tables["report/arms"] = (HEADER, stats_rows(report.science, report.options.mode))
    return tables


def log_report(report: Any, mode: str = "offline") -> Path:
    """Log ``report`` (a `report.Report`) as one W&B run; returns the run's local folder."""
    if mode == "online" and not wandb_api_key_configured():
        raise ConfigError("--wandb online needs a W&B API key (`wandb login`); or use --wandb offline")
    import wandb

    out = Path(report.sweep.sweep_dir).resolve()  # W&B's service process may run in another directory
    logger = next((j.config.get("logger") for j in report.sweep.jobs if isinstance(j.config.get("logger"), dict)), {})
    run = wandb.init(
        project=logger.get("project") or DEFAULT_PROJECT,
        entity=logger.get("entity"),
        group=report_group(report),
        job_type=JOB_TYPE,
        name=f"report {out.name}",
        dir=os.fspath(out),
        config={k: v for k, v in vars(report.options).items()},
        reinit="finish_previous",
        settings=wandb.Settings(mode=mode, console="off", silent=True),
    )
    logged: dict[str, Any] = {
        key: wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
        for key, (columns, rows) in report_tables(report).items()
    }
    for image in (f for f in report.files if f.suffix == ".png"):
        logged[f"report/{image.stem}"] = wandb.Image(os.fspath(image))
    run.log(logged)
    if report.rows and report.rows[0].numbers["best"] is not None:
        run.summary.update({"best_job": report.rows[0].job.name, "best_value": report.rows[0].numbers["best"]})
    folder = Path(run.dir).parent
    run.finish()
    return folder
