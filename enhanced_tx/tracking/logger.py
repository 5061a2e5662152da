"""The logger interface the trainer talks to; every logger also writes ``<run_dir>/metrics.jsonl``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from enhanced_tx.runfolder import RunFolder

from .jsonl import JsonlWriter, to_jsonable


class MetricLogger:
    """Local metric logging; subclasses add a backend through the ``_backend_*`` hooks.

    Files in the run folder: ``metrics.jsonl`` (scalars), ``tables.jsonl`` (one table a line) and
    ``summary.json`` (the latest summary values), so a run is comparable without any service.
    """

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self._metrics: JsonlWriter | None = None
        self._tables: JsonlWriter | None = None
        self._summary: dict[str, Any] = {}

    @property
    def run_id(self) -> str | None:
        """The backend's run id (saved in checkpoints so a resumed run continues it); None locally."""
        return None

    def start(
        self,
        run_dir: str | os.PathLike,
        config: Mapping[str, Any] | None = None,
        choices: Mapping[str, str | None] | None = None,
        tags: Iterable[str] = (),
        group: str | None = None,
        name: str | None = None,
        job_type: str | None = "train",
        resume_id: str | None = None,
    ) -> None:
        """Open the run: ``config`` is the resolved config, ``choices`` Hydra's group choices."""
        if self._metrics is not None:
            raise RuntimeError("this logger is already started; call finish() before starting another run")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = JsonlWriter(RunFolder(self.run_dir).metrics)
        self._backend_start(
            config=plain_config(config),
            choices=dict(choices or {}),
            tags=list(tags),
            group=group,
            name=name,
            job_type=job_type,
            resume_id=resume_id,
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log scalars at ``step`` (tensors and NumPy numbers are converted)."""
        record = self._require(self._metrics).write(metrics, step)
        self._backend_log({k: record[k] for k in metrics}, step)

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        """Log a table (e.g. generated samples) under ``key``."""
        self._require(self._metrics)
        if self._tables is None:
            self._tables = JsonlWriter(RunFolder(self.run_dir).tables)
        rows = [list(to_jsonable(list(row))) for row in rows]
        self._tables.write({"key": key, "columns": list(columns), "rows": rows}, step)
        self._backend_log_table(key, list(columns), rows, step)

    def summary(self, values: Mapping[str, Any]) -> None:
        """Set run-level values (best metric, parameter count, ...)."""
        self._require(self._metrics)
        values = {k: to_jsonable(v) for k, v in values.items()}
        self._summary.update(values)
        RunFolder(self.run_dir).summary.write_text(json.dumps(self._summary, indent=2, default=str) + "\n")
        self._backend_summary(values)

    def finish(self, exit_code: int = 0) -> None:
        """Close the run; a non-zero ``exit_code`` marks it failed. Safe to call twice."""
        if self._metrics is None:
            return
        try:
            self._backend_finish(exit_code)
        finally:
            for writer in (self._metrics, self._tables):
                if writer is not None:
                    writer.close()
            self._metrics = self._tables = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def _require(self, writer: JsonlWriter | None) -> JsonlWriter:
        if writer is None:
            raise RuntimeError("call start(run_dir, ...) before logging")
        return writer

    # backend hooks: no-ops here
    def _backend_start(self, **kwargs: Any) -> None:
        pass

    def _backend_log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def _backend_log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        pass

    def _backend_summary(self, values: dict[str, Any]) -> None:
        pass

    def _backend_finish(self, exit_code: int) -> None:
        pass


class NullLogger(MetricLogger):
    """``logger=none``: only the local files."""


def plain_config(config: Any) -> dict[str, Any]:
    """A resolved, plain-dict copy of a config (an OmegaConf object is resolved first)."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        try:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(config):
                return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
        except ImportError:
            pass
    return {str(k): v for k, v in dict(config).items()}
