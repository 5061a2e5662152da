"""`RunFolder`: the one place that names the files of a training run folder (ground floor: no torch).

Layout (what `run_train.py` writes, what generation, evaluation, the report and resume read)::

    RUN/.hydra/config.yaml, overrides.yaml   the composed config and the command-line overrides (Hydra)
    RUN/config.resolved.yaml                 every ${...} resolved: rebuilds the model without Hydra
    RUN/run_info.json                        code version, packages, command, machine
    RUN/tokenizer/                           the tokenizer the weights index
    RUN/checkpoints/{step_N,last,best}.pt    full training state
    RUN/model.safetensors, model.ema.safetensors   final weights (and their moving average)
    RUN/metrics.jsonl, tables.jsonl, summary.json  what the logger wrote
    RUN/FAILED.json, run_train.log           a failed job's record, the console log
    RUN/eval/, RUN/generations/              what run_eval.py / run_generate.py wrote
    RUN/.lock                                held (OS file lock) by the one process training into RUN

One writer per folder: `lock_for_writing()` takes an exclusive `fcntl.flock` on `.lock` and writes its PID
inside; the kernel releases it when the process dies, so a killed run leaves no stale lock. Readers never
take the lock, so they keep working while a run trains.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path
from typing import IO

from enhanced_tx.errors import EnhancedTxError

_STEP_NAME = re.compile(r"^step_\d+$")
_CHECKPOINTS = "checkpoints"


class RunFolderLocked(EnhancedTxError, RuntimeError):
    """Another live process is training into this run folder."""


class RunFolder:
    """Paths inside one run folder; creating the object touches nothing on disk."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path)
        self._lock_file: IO[str] | None = None

    @classmethod
    def of_file(cls, path: str | os.PathLike) -> RunFolder:
        """The run folder a weights or checkpoint file lies in (`RUN/checkpoints/x.pt`, `RUN/model.safetensors`)."""
        path = Path(path)
        return cls(path.parent.parent if path.parent.name == _CHECKPOINTS else path.parent)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # configuration and provenance
    @property
    def hydra_config(self) -> Path:
        return self.root / ".hydra" / "config.yaml"

    @property
    def overrides(self) -> Path:
        return self.root / ".hydra" / "overrides.yaml"

    @property
    def resolved_config(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def hydra_record(self) -> Path:
        """Hydra's record of the job (.hydra/hydra.yaml: the group choices, the command)."""
        return self.root / ".hydra" / "hydra.yaml"

    @property
    def run_info(self) -> Path:
        return self.root / "run_info.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    # weights and training state
    @property
    def checkpoints_dir(self) -> Path:
        return self.root / _CHECKPOINTS

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def ema_weights(self) -> Path:
        return self.root / "model.ema.safetensors"

    def checkpoint(self, name: str | int) -> Path:
        """`checkpoints/<name>.pt` for `last`, `best`, `step_N` (or the step number N itself)."""
        return checkpoint_file(self.checkpoints_dir, name)

    @staticmethod
    def is_step_checkpoint(path: Path) -> bool:
        return path.suffix == ".pt" and bool(_STEP_NAME.match(path.stem))

    # what the logger and the entry points write
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def tables(self) -> Path:
        return self.root / "tables.jsonl"

    @property
    def failed(self) -> Path:
        return self.root / "FAILED.json"

    @property
    def log(self) -> Path:
        return self.root / "run_train.log"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # questions about the folder
    def exists(self) -> bool:
        return self.root.is_dir()

    def holds_run(self) -> bool:
        """Whether a training run's results are here: a checkpoint, final weights or logged metrics. Hydra's own
        files and what a run writes before it trains (config, run info, tokenizer, an empty metrics file) do
        not count."""
        return (
            self.weights.is_file()
            or (self.metrics.is_file() and self.metrics.stat().st_size > 0)
            or (self.checkpoints_dir.is_dir() and any(self.checkpoints_dir.glob("*.pt")))
        )

    def lock_holder(self) -> int | None:
        """PID of the live process holding the writer's lock, else None (a reader's question: takes nothing)."""
        try:
            with open(self.lock) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return _read_pid(self.lock)
                fcntl.flock(f, fcntl.LOCK_UN)
                return None
        except OSError:
            return None

    # the one writer
    def lock_for_writing(self) -> RunFolder:
        """Take the writer's lock for this process (idempotent); refuse in one line if another process holds it.

        The lock lives as long as this object (or until `unlock()`): keep the object for the whole run."""
        if self._lock_file is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            f = open(self.lock, "a+")  # noqa: SIM115 (held open for the whole run: the lock lives with it)
        except OSError as e:
            raise EnhancedTxError(
                f"cannot write into run folder {self.root} ({e.strerror}); pick a writable folder"
            ) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = _read_pid(self.lock)
            who = f"process {holder}" if holder else "another process"
            raise RunFolderLocked(
                f"run folder {self.root} is in use by {who} (one writer per run folder); wait for it to end, "
                "or train into another folder (hydra.run.dir=...)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f
        return self

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @property
    def is_locked_by_me(self) -> bool:
        return self._lock_file is not None


def checkpoint_file(directory: Path, name: str | int) -> Path:
    """`<directory>/<name>.pt` of a checkpoints folder: `last`, `best`, `step_N` (or the step number N)."""
    if isinstance(name, int) or str(name).isdigit():
        name = f"step_{int(name)}"
    name = str(name).removesuffix(".pt")
    if "/" in name or name.startswith("."):
        raise EnhancedTxError(f"checkpoint name {name!r} is not a name inside {directory}")
    return Path(directory) / f"{name}.pt"


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
