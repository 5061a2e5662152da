"""Reporting an evaluation to the training run's tracker (its W&B run, resumed by the id in its checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from enhanced_tx.runfolder import RunFolder
from enhanced_tx.trusted_targets import instantiate_trusted, read_saved_config


def run_choices(run_dir: Path) -> dict[str, str]:
    """The config-group choices the run trained with (from Hydra's record, `.hydra/hydra.yaml`)."""
    path = RunFolder(run_dir).hydra_record
    if not path.is_file():
        return {}
    choices = OmegaConf.select(read_saved_config(path), "hydra.runtime.choices")
    # read as written: an interpolation (${oc.env:WANDB_API_KEY}) in a run folder must not become a W&B tag
    plain = OmegaConf.to_container(choices, resolve=False) if isinstance(choices, DictConfig) else {}
    return {
        str(k): str(v)
        for k, v in plain.items()
        if not str(k).startswith("hydra") and isinstance(v, str | int | float | bool) and "${" not in str(v)
    }


def log_to_run(
    run_config: DictConfig,
    run_dir: Path,
    *,
    resume_id: str | None,
    prefix: str,
    metrics: Mapping[str, float],
    summary: Mapping[str, Any],
    step: int,
    table: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
) -> object:
    """Open the run's logger (its own logger config: project, entity, mode) on the run id `resume_id`,
    log `metrics` at `step` and as summary values (with `summary`), all under `prefix`, then close it.

    The logger's local files go to `<run>/eval/` so the training run's metrics.jsonl and summary.json
    stay as training left them. The run is closed with exit code 0 whatever happens here: an evaluation
    must never mark a training run failed.
    """
    logger = instantiate_trusted(run_config, "logger", str(RunFolder(run_dir).resolved_config))  # a saved config
    choices = run_choices(run_dir)
    logger.start(
        run_dir=RunFolder(run_dir).eval_dir,
        config={},  # a resumed W&B run keeps its training config; only `choices` is (re)set, unchanged
        choices=choices,
        tags=[f"{k}={v}" for k, v in sorted(choices.items())],
        group=None,
        name=None,
        job_type=None if resume_id else "eval",
        resume_id=resume_id,
    )
    try:
        scoped = {f"{prefix}/{k}": v for k, v in metrics.items()}
        logger.log(scoped, step=step)
        logger.summary({**scoped, **{f"{prefix}/{k}": v for k, v in summary.items()}})
        if table is not None:
            columns, rows = table
            logger.log_table(f"{prefix}/samples", list(columns), [list(r) for r in rows], step=step)
    finally:
        logger.finish(0)
    return logger
