"""Entry-point plumbing shared by run_train.py, run_generate.py and run_eval.py.

- `translate_legacy_flags`: the seed project's `--flags` become Hydra overrides.
- `guarded`: errors a user can cause end as one line and a non-zero exit (full traceback with
  HYDRA_FULL_ERROR=1); inside a multirun a failing job is recorded (FAILED.json) and returns the worst value
  for the sweeper (+inf when minimising), the sweep goes on, and it exits non-zero at the end
  (enhanced_tx/sweeps/callbacks.py). Under the joblib launcher each job limits its torch threads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from enhanced_tx.errors import EnhancedTxError, one_line, unwrap
from enhanced_tx.sweeps.dirnames import register_resolvers
from enhanced_tx.sweeps.failures import FAILURE_FILE, clear_failure
from enhanced_tx.sweeps.failures import record_failure as _write_failure
from enhanced_tx.tracking.console_log import keep_console

register_resolvers()  # ${short_dirname:...} in conf/hydra/default.yaml: before Hydra resolves a job folder

# seed flag -> override key; switches (no value needed) also map `true`/`false` to an override value
LEGACY_FLAGS: dict[str, str] = {
    "--batch_size": "trainer.batch_size",
    "--model_size": "model",
    "--epochs": "trainer.epochs",
    "--device": "device",
    "--mixed_precision": "precision",
    "--use_rotary_embeddings": "positional",
    "--gradient_checkpointing": "trainer.gradient_checkpointing",
    "--gradient_accumulation_steps": "trainer.gradient_accumulation_steps",
    "--max_steps": "trainer.max_steps",
    "--lr": "optimizer.lr",
    "--seed": "seed",
}
LEGACY_SWITCHES: dict[str, dict[bool, str]] = {
    "--use_rotary_embeddings": {True: "rope", False: "sinusoidal"},
    "--gradient_checkpointing": {True: "true", False: "false"},
}
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# for "needs a value" errors
_EXAMPLES = {"--model_size": "tiny", "--mixed_precision": "bf16", "--device": "cpu", "--lr": "3e-4"}
__all__ = ["FAILURE_FILE", "LEGACY_FLAGS", "guarded", "one_line", "record_failure", "translate_legacy_flags"]


def translate_legacy_flags(argv: list[str] | None = None) -> list[str]:
    """Rewrite the seed's flags in place into overrides: `--batch_size 8` / `--batch_size=8` ->
    `trainer.batch_size=8`; switches `--gradient_checkpointing` [true|false]. `--epochs N` alone also lifts the
    default `trainer.max_steps` cap (with `--max_steps` too, the smaller limit wins)."""
    args = sys.argv if argv is None else argv
    out, i, epochs_flag = [args[0]], 1, False
    while i < len(args):
        flag, has_inline, inline = args[i].partition("=")
        epochs_flag = epochs_flag or flag == "--epochs"
        if flag not in LEGACY_FLAGS:
            out.append(args[i])
            i += 1
            continue
        key, switch = LEGACY_FLAGS[flag], LEGACY_SWITCHES.get(flag)
        following = args[i + 1] if i + 1 < len(args) else None
        if has_inline:
            value = inline
        elif switch is not None:
            if following is not None and following.lower() in _BOOLEANS:
                value, i = following, i + 1
            else:
                value = "true"
        elif following is None or following.startswith("--"):
            raise SystemExit(f"error: {flag} needs a value, e.g. {flag} {_EXAMPLES.get(flag, '8')}")
        else:
            value, i = following, i + 1
        if switch is not None:
            if value.lower() not in _BOOLEANS:
                raise SystemExit(f"error: {flag}={value}: expected true or false")
            value = switch[_BOOLEANS[value.lower()]]
        out.append(f"{key}={value}")
        i += 1
    overridden = {arg.partition("=")[0].lstrip("+~") for arg in out[1:]}
    if epochs_flag and "trainer.max_steps" not in overridden:
        out.append("trainer.max_steps=null")  # the default 400-step cap would silently cut the epochs short
    args[:] = out
    return args


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story. Imported lazily: entry points stay fast to start."""
    from omegaconf.errors import OmegaConfBaseException

    from enhanced_tx.checkpoint import CheckpointError
    from enhanced_tx.data.errors import DataError

    return (EnhancedTxError, DataError, CheckpointError, OmegaConfBaseException, FileNotFoundError, ValueError)


def _out_of_memory(error: BaseException) -> bool:
    """An allocation the config asked for failed (a size too large for this machine): the user's to fix."""
    error = unwrap(error)
    text = str(error).lower()
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
    )


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def record_failure(output_dir: str | os.PathLike, error: BaseException) -> Path:
    """Leave a marker in the job folder that the sweep report and the end-of-sweep check read."""
    from enhanced_tx.sweeps.job import hydra_config

    hydra = hydra_config()
    job = hydra.job if hydra is not None else {}
    return _write_failure(output_dir, one_line(error), job.get("num"), job.get("override_dirname") or None)


def _output_dir(cfg) -> str | None:
    """The run folder a failure marker belongs in: training runs only. Evaluation and generation write into an
    existing run (or nowhere) and their Hydra output folder is the working directory, which is not a run."""
    if not hasattr(cfg, "get") or "trainer" not in cfg:
        return None
    return cfg.get("paths", {}).get("output_dir")


def _refused_before_start(error: BaseException) -> bool:
    """A run refused before it touched its folder (it holds another run): that run has not failed."""
    from enhanced_tx.training.resume import RunRefused

    return isinstance(unwrap(error), RunRefused)


def guarded(task: Callable) -> Callable:
    """Wrap a Hydra task so that failures are one line, a non-zero exit, or (in a sweep) the worst metric."""

    @functools.wraps(task)
    def wrapper(cfg):
        log = _console_log(cfg)
        with keep_console(log) if log is not None else contextlib.nullcontext():
            return _call(task, cfg)

    return wrapper


def _console_log(cfg) -> Path | None:
    """Where a training run keeps the console its user saw (rank 0 only: one writer per run folder)."""
    if _output_dir(cfg) is None or os.environ.get("RANK", "0") != "0":
        return None
    from enhanced_tx.runfolder import RunFolder

    return RunFolder(_output_dir(cfg)).log


def _call(task: Callable, cfg):
    """`task(cfg)` with the failure handling `guarded` describes."""
    from enhanced_tx.sweeps.job import failed_job_value, hydra_config, limit_torch_threads
    from enhanced_tx.training.preemption import TrainingInterrupted

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    multirun = _in_multirun()
    marker = Path(_output_dir(cfg)) / FAILURE_FILE if _output_dir(cfg) else None
    previous_marker = marker.read_bytes() if marker is not None and marker.is_file() else None
    if marker is not None:
        clear_failure(marker.parent)  # a run started again in its folder (resume) is no longer failed
    if multirun:
        limit_torch_threads()
    try:
        return task(cfg)
    except TrainingInterrupted as interrupted:
        print(str(interrupted), file=sys.stderr)
        if _output_dir(cfg) is not None:
            from enhanced_tx.tasks.commands import resume_command

            print(f"continue with: {resume_command(Path(_output_dir(cfg)))}", file=sys.stderr)
        raise SystemExit(interrupted.exit_code) from None  # in a sweep too: a signal stops the sweep
    except Exception as error:
        if multirun:
            job = hydra_config().job
            overrides = job.get("override_dirname") or "no overrides"
            print(f"job {job.get('num')} ({overrides}) failed: {one_line(error)}", file=sys.stderr)
            if _output_dir(cfg):
                record_failure(_output_dir(cfg), error)
            if full:
                raise
            return failed_job_value()  # not NaN: the Optuna sweeper crashes on NaN
        if _refused_before_start(error):  # the folder holds another run: leave its record as it was
            if previous_marker is not None:
                marker.write_bytes(previous_marker)
        elif marker is not None and marker.parent.is_dir():
            record_failure(marker.parent, error)  # the folder says "failed", not "a result"
        if full or not (isinstance(unwrap(error), _user_errors()) or _out_of_memory(unwrap(error))):
            raise
        hint = " (the config asks for more memory than there is: lower its sizes)" if _out_of_memory(error) else ""
        print(f"error: {one_line(error)}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
