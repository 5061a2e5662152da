"""A folder of checkpoints: `step_N.pt` (the newest `keep_last` kept), `last.pt` and `best.pt`.

Neither `last.pt` nor `best.pt` is a second copy: `last.pt` is a pointer to the newest step file
(`checkpoint.pointer`; retention keeps what it names), `best.pt` a hard link to its step file (another name
of the same bytes, which outlives the step file's pruning). A state costs its bytes once; `keep_last=0`
keeps no step file besides the one `last.pt` names.

Optimizer state is kept only where a run can resume from it: `weights_only=True` (trainer.checkpoint=weights,
the default of multirun sweep jobs) writes every state without it (`checkpoint.lean`), and a full `best.pt`
whose step file is pruned is rewritten weights-only (no one resumes from the best; it is for generation)."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import torch

from enhanced_tx.checkpoint.atomic import atomic_link
from enhanced_tx.checkpoint.format import read_verified, save_checkpoint
from enhanced_tx.checkpoint.lean import is_weights_checkpoint, save_weights_checkpoint
from enhanced_tx.checkpoint.pointer import target_of, write_pointer
from enhanced_tx.errors import CheckpointError
from enhanced_tx.runfolder import checkpoint_file

_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointManager:
    """``step_N.pt`` (newest ``keep_last`` kept), ``last.pt`` and ``best.pt`` in one folder."""

    def __init__(self, directory: str | os.PathLike, keep_last: int | None = 3, weights_only: bool = False) -> None:
        if keep_last is not None and keep_last < 0:
            raise CheckpointError(f"keep_last must be >= 0 or null (keep all), got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.weights_only = weights_only  # states saved without optimizer state, as safetensors (checkpoint.lean)

    @property
    def last(self) -> Path:
        return checkpoint_file(self.directory, "last")

    @property
    def best(self) -> Path:
        return checkpoint_file(self.directory, "best")

    def step_path(self, step: int) -> Path:
        return checkpoint_file(self.directory, step)

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        """Write ``step_{step}.pt``, then ``last.pt`` (and ``best.pt``); prune old step files."""
        path = self.step_path(step)
        if self.weights_only:
            save_weights_checkpoint({**state, "step": step}, path)
        else:
            save_checkpoint(state, path, step=step)
        # the verified-by-checksum step file under other names, each swapped in atomically
        write_pointer(self.last, path)
        if is_best:
            atomic_link(path, self.best)
        self._prune()
        return path

    def step_files(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the step files, newest first (by the step in the name)."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found, reverse=True)

    def latest_good(self) -> Path | None:
        """The newest checkpoint that loads and verifies (by stored step); corrupt ones are skipped."""
        found = self.latest_good_with_state()
        return found[0] if found else None

    def latest_good_with_state(self) -> tuple[Path, dict] | None:
        """`latest_good` and the state it verified, for a caller that would otherwise read the file again."""
        best: tuple[int, Path, dict] | None = None
        candidates = [(None, self.last)] if self.last.is_file() else []
        for name_step, path in candidates + list(self.step_files()):
            if best is not None and name_step is not None and name_step <= best[0]:
                break  # step files are newest first: none further down can beat what we have
            try:
                step, state = read_verified(path)
            except CheckpointError as e:
                warnings.warn(f"skipping {path}: {e}", stacklevel=3)
                continue
            step = step if step is not None else (name_step if name_step is not None else -1)
            if best is None or step > best[0]:
                best = (step, path, state)
        return (best[1], best[2]) if best else None

    def resolve(self, spec: str | os.PathLike | None) -> Path | None:
        """``"auto"``: newest good checkpoint or None (start fresh); ``"last"``/``"best"``/a path: that file.

        A path may also be a folder (a run or its checkpoints/): its newest good checkpoint.
        """
        if spec is None or (isinstance(spec, str) and spec.lower() in ("none", "null", "never", "")):
            return None
        if spec == "auto":
            return self.latest_good()
        if spec in ("last", "best"):
            path = self.last if spec == "last" else self.best
            if not path.is_file():
                raise CheckpointError(
                    f"checkpoint {path} does not exist; use checkpoint=auto for the newest good one, "
                    "or pass a file path"
                )
            return path
        path = Path(spec).expanduser()
        if path.is_dir():
            folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
            found = CheckpointManager(folder).latest_good()
            if found is None:
                raise CheckpointError(f"no usable checkpoint in {folder}; pass a checkpoint file instead")
            return found
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist; pass auto, last, best or an existing file")
        return path

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        named = {target_of(self.last)}
        for _, path in self.step_files()[self.keep_last :]:
            if path not in named:
                self._slim_best_sharing(path)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _slim_best_sharing(self, path: Path) -> None:
        """Before `path` is pruned: if `best.pt` is a hard link of it holding full state, rewrite `best.pt` as
        weights only (it would otherwise be the last name of a full state no one resumes from)."""
        try:
            if not self.best.is_file() or not os.path.samefile(path, self.best) or is_weights_checkpoint(path):
                return
            step, state = read_verified(path)
        except (OSError, CheckpointError):
            return  # a damaged or vanished file is pruned as it is
        if isinstance(state.get("model"), dict) and all(isinstance(t, torch.Tensor) for t in state["model"].values()):
            save_weights_checkpoint({**state, "step": step if step is not None else state.get("step")}, self.best)
