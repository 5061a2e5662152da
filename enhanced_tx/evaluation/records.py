"""What an evaluation leaves in the run folder: `eval/<name>.jsonl` (one row per test item) and
`eval/<name>.json` (the scores and how they were obtained)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from enhanced_tx.checkpoint import CheckpointError, load_checkpoint
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tracking.jsonl import read_jsonl, to_jsonable
from enhanced_tx.trusted_targets import check_run_id


def output_name(name: str | None, data_path: str | None) -> str:
    """`name`, else the test file's stem, else "sample" (the built-in corpus has no file)."""
    if name:
        if "/" in name or os.sep in name or name.startswith("."):
            from enhanced_tx.errors import ConfigError

            raise ConfigError(f"name={name!r} must be a plain file name (no folders), e.g. name=newstest2019")
        return name
    return Path(data_path).stem if data_path else "sample"


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object a line (UTF-8, non-ASCII kept readable), written atomically."""
    text = "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
    _write_text(path, text)


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    text = json.dumps(to_jsonable(dict(record)), indent=2, ensure_ascii=False) + "\n"
    _write_text(path, text)


def checkpoint_info(run_dir: Path, weights: Path) -> dict[str, Any]:
    """{"step", "logger_run_id"} of the weights' checkpoint; for a weights-only file (model.safetensors,
    written at the end of training) those of `checkpoints/last.pt`. Empty when neither is readable."""
    for path in (weights, RunFolder(run_dir).checkpoint("last")):
        if path.suffix != ".pt" or not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError:  # a weights-only .pt state dict: no training state inside
            continue
        step = (state.get("train_state") or {}).get("step", state.get("step"))
        return {"step": step, "logger_run_id": check_run_id(state.get("logger_run_id"), str(path))}
    return {}


def next_log_step(run_dir: Path) -> int:
    """A step after everything the run has logged (training and earlier evaluations): W&B drops values
    logged at a step below the run's current one, so each evaluation takes the next free step."""
    steps = [-1]
    metrics = RunFolder(run_dir).metrics
    if metrics.is_file():
        steps += [r["step"] for r in read_jsonl(metrics) if isinstance(r.get("step"), int)]
    for record in RunFolder(run_dir).eval_dir.glob("*.json"):
        try:
            step = json.loads(record.read_text(encoding="utf-8")).get("log_step")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(step, int):
            steps.append(step)
    return max(steps) + 1


def scalar_metrics(record: Mapping[str, Any], keys: Iterable[str]) -> dict[str, float]:
    """The finite numbers among `keys` of `record`."""
    out = {}
    for key in keys:
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = value
    return out


def _write_text(path: Path, text: str) -> None:
    """Written next to `path`, then renamed over it: a reader never sees half a file (umask permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
