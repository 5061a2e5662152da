"""Entry-point plumbing shared by run_train.py, run_generate.py and run_eval.py.

- `translate_legacy_flags`: the seed project's `--flags` become Hydra overrides.
- `guarded`: errors a user can cause end as one line and a non-zero exit (full traceback with
  HYDRA_FULL_ERROR=1); inside a multirun a failing job is recorded and the sweep goes on.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from enhanced_tx.errors import EnhancedTxError

# seed flag -> (override key, value for a bare flag)
LEGACY_FLAGS: dict[str, tuple[str, str | None]] = {
    "--batch_size": ("trainer.batch_size", None),
    "--epochs": ("trainer.epochs", None),
    "--device": ("device", None),
    "--mixed_precision": ("precision", None),
    "--use_rotary_embeddings": ("positional", "rope"),
    "--gradient_checkpointing": ("trainer.gradient_checkpointing", "true"),
    "--gradient_accumulation_steps": ("trainer.gradient_accumulation_steps", None),
    "--max_steps": ("trainer.max_steps", None),
    "--lr": ("optimizer.lr", None),
    "--seed": ("seed", None),
}
FAILURE_FILE = "FAILED.json"


def translate_legacy_flags(argv: list[str] | None = None) -> list[str]:
    """Rewrite `--batch_size 8` / `--batch_size=8` / `--gradient_checkpointing` in place into overrides."""
    args = sys.argv if argv is None else argv
    out, i = [args[0]], 1
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        if flag not in LEGACY_FLAGS:
            out.append(args[i])
            i += 1
            continue
        key, bare_value = LEGACY_FLAGS[flag]
        if inline:
            value = inline
        elif bare_value is not None:
            value = bare_value
        elif i + 1 < len(args):
            i += 1
            value = args[i]
        else:
            raise SystemExit(f"error: {flag} needs a value")
        out.append(f"{key}={value}")
        i += 1
    args[:] = out
    return args


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story. Imported lazily: entry points stay fast to start."""
    from omegaconf.errors import OmegaConfBaseException

    from enhanced_tx.checkpoint import CheckpointError
    from enhanced_tx.data.errors import DataError

    return (EnhancedTxError, DataError, CheckpointError, OmegaConfBaseException, FileNotFoundError, ValueError)


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def one_line(error: BaseException) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {message}" if not isinstance(error, EnhancedTxError) else message


def record_failure(output_dir: str | os.PathLike, error: BaseException) -> None:
    """Leave a marker in the job folder that the sweep report and the end-of-sweep check read."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / FAILURE_FILE).write_text(json.dumps({"error": one_line(error)}) + "\n")


def guarded(task: Callable) -> Callable:
    """Wrap a Hydra task so that failures are one line, a non-zero exit, or (in a sweep) a NaN metric."""

    @functools.wraps(task)
    def wrapper(cfg):
        from enhanced_tx.training.preemption import TrainingInterrupted

        full = os.environ.get("HYDRA_FULL_ERROR") == "1"
        try:
            return task(cfg)
        except TrainingInterrupted as interrupted:
            print(str(interrupted), file=sys.stderr)
            raise SystemExit(interrupted.exit_code) from None  # in a sweep too: a signal stops the sweep
        except Exception as error:
            if _in_multirun():
                output_dir = cfg.get("paths", {}).get("output_dir") if hasattr(cfg, "get") else None
                print(f"job failed: {one_line(error)}", file=sys.stderr)
                if output_dir:
                    record_failure(output_dir, error)
                if full:
                    raise
                return math.nan
            if full or not isinstance(error, _user_errors()):
                raise
            print(f"error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper
