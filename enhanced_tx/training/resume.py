"""Resume (`trainer.resume`): find and read the checkpoint once, and refuse what would not continue the run.

- `find_resume_point`: the checkpoint `trainer.resume` names, read and checksum-verified once; run
  composition (`enhanced_tx.tasks.train`) and the trainer share it.
- `check_same_run`: the config that defines the run (model, tokenizer, data, optimizer, scheduler, precision,
  seed) must be the one stored in the checkpoint; limits, evaluation, logging, paths and devices may change.
- `check_fresh_folder`: a run that resumes nothing must not write into another run's folder;
  `trainer.resume=none` starts over there deliberately, moving the old run's files aside.
- `ResumeSpec`: the one parser of `trainer.resume` (null | none | auto | last | best | a path).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enhanced_tx.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from enhanced_tx.checkpoint.atomic import atomic_replace
from enhanced_tx.checkpoint.format import read_verified
from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder

# Top-level config keys whose values define what a run trains; a resume must not change them.
RUN_DEFINING = ("model", "tokenizer", "data", "optimizer", "scheduler", "precision", "seed")
# ... except these, which say where files are or how a kernel runs, not what is trained.
MAY_CHANGE = frozenset(
    {
        "model.linear_backend",
        "tokenizer.local_files_only",
        "data.path",
        "data.val_path",
        "data.cache_dir",
        "optimizer.fused",
        "optimizer.foreach",
    }
)
_SHOWN_DIFFERENCES = 8  # keys named in the error; the rest are counted


class RunRefused(ConfigError):
    """The run folder or checkpoint belongs to another run; raised before anything in the folder is touched."""


def holds_optimizer(state: dict) -> bool:
    """Whether a checkpoint's state can continue training: it holds the optimizer, or it is a sharded checkpoint's
    `.pt`, whose DCP folder always holds the optimizer beside the weights (weights-only states hold neither)."""
    from enhanced_tx.checkpoint import sharded  # torch.distributed.checkpoint: imported only when resuming

    return state.get("optimizer") is not None or sharded.is_sharded(state)


@dataclass(frozen=True)
class ResumeSpec:
    """`trainer.resume`: None/"" (a fresh run into an empty folder), "none" (start over in this folder,
    moving the old run's files aside), "auto" (the newest good checkpoint, else fresh), "last", "best", or a
    path (a file, or a folder: its newest good checkpoint; another run's makes a fork)."""

    value: str | None

    @classmethod
    def parse(cls, spec: str | os.PathLike | None) -> ResumeSpec:
        text = None if spec is None else str(spec).strip()
        return cls(text or None)

    @property
    def resumes(self) -> bool:
        return self.value is not None and not self.starts_over

    @property
    def starts_over(self) -> bool:
        return self.value is not None and self.value.lower() in ("none", "never")

    @property
    def auto(self) -> bool:
        return self.value == "auto"


@dataclass
class ResumePoint:
    """A checkpoint to resume from: where it is and its state (read once; `take_state` hands it over)."""

    path: Path
    state: dict | None

    def __post_init__(self) -> None:
        self.step = int(self.state.get("train_state", {}).get("step", self.state.get("step") or 0))
        self.config = self.state.get("config") or {}
        self.logger_run_id = self.state.get("logger_run_id")

    def take_state(self) -> dict:
        """The checkpoint's state; the point lets go of it (a model's weights are not held twice)."""
        if self.state is None:
            raise RuntimeError(f"the state of {self.path} was already handed over")
        state, self.state = self.state, None
        return state

    def belongs_to(self, run_dir: Path) -> bool:
        """Whether the checkpoint lies in `run_dir`'s own checkpoints/ folder (not a fork of another run)."""
        own = RunFolder(run_dir).checkpoints_dir.resolve()
        return self.path.resolve().is_relative_to(own)

    @property
    def run_dir(self) -> Path:
        """The run folder the checkpoint belongs to (`RUN/checkpoints/x.pt`), or the file's folder."""
        return RunFolder.of_file(self.path).root


def find_resume_point(spec: str | os.PathLike | None, run_dir: Path) -> ResumePoint | None:
    """The checkpoint `trainer.resume=spec` names, loaded and verified; None when there is nothing to resume
    (no spec, or `auto` in a folder without a good checkpoint: a fresh start)."""
    spec = ResumeSpec.parse(spec)
    if not spec.resumes:
        return None
    manager = CheckpointManager(RunFolder(run_dir).checkpoints_dir)
    if spec.auto:
        return _newest_good(manager)
    path = manager.resolve(spec.value)  # last, best, a file, or a folder (its newest good checkpoint)
    return None if path is None else ResumePoint(path, load_checkpoint(path))


def _newest_good(manager: CheckpointManager) -> ResumePoint | None:
    """`CheckpointManager.latest_good`, keeping the state it verified instead of reading it again. Where
    checkpoints exist but none is readable, stop: starting from scratch would append to the run's metrics."""
    found = manager.latest_good_with_state()
    if found:
        return ResumePoint(*found)
    saved = sorted(manager.directory.glob("*.pt")) if manager.directory.is_dir() else []
    if saved:
        reasons = "; ".join(_why_unreadable(p) for p in saved)
        raise RunRefused(
            f"trainer.resume=auto: no checkpoint in {manager.directory} is readable ({reasons}); train into a "
            "new folder (hydra.run.dir=...), or pass trainer.resume=none to start over in this one "
            "(the old metrics and checkpoints are moved aside)"
        )
    return None


def _why_unreadable(path: Path) -> str:
    try:
        read_verified(path)
    except CheckpointError as e:
        return f"{path.name}: {' '.join(str(e).split())[:120]}"
    return f"{path.name}: readable"


def check_same_run(point: ResumePoint, config: dict, spec: str | os.PathLike) -> None:
    """Refuse to resume with a config whose run-defining keys differ from the checkpoint's (one line)."""
    differences = config_differences(point.config, config)
    if not differences:
        return
    shown = [f"{key}: {_show(old)} -> {_show(new)}" for key, old, new in differences[:_SHOWN_DIFFERENCES]]
    if len(differences) > _SHOWN_DIFFERENCES:
        shown.append(f"and {len(differences) - _SHOWN_DIFFERENCES} more")
    # a warm start loads the weights into the new config's model: advice only where the model stays the same
    same_model = not any(key.startswith("model.") for key, _, _ in differences)
    warm_start = (
        f", or start a new run (a new hydra.run.dir) from its weights with trainer.init_from={point.run_dir}"
        if same_model
        else ""
    )
    raise RunRefused(
        f"trainer.resume={spec}: {point.path} was trained with another config ({'; '.join(shown)}); "
        f"repeat the run's original overrides to resume it{warm_start}"
    )


def config_differences(stored: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, current value) for every run-defining key that both configs set and that
    differs. A checkpoint without a stored config (a `Trainer` used from Python) has nothing to compare."""
    if not stored:
        return []
    old, new = _flatten(stored), _flatten(current)
    return [
        (key, old[key], new[key])
        for key in sorted(old.keys() & new.keys())
        if key.split(".", 1)[0] in RUN_DEFINING and key not in MAY_CHANGE and old[key] != new[key]
    ]


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def check_fresh_folder(run_dir: Path) -> None:
    """A fresh run (nothing resumed) must not mix its tokenizer, metrics and checkpoints with another's."""
    if RunFolder(run_dir).holds_run():
        raise RunRefused(
            f"{run_dir} already holds a run; pass trainer.resume=auto to continue it or choose a new hydra.run.dir"
        )


def start_over(run_dir: Path) -> Path | None:
    """`trainer.resume=none`: move the old run's metrics, tables, summary and checkpoints into
    `replaced-<n>/` inside the folder (nothing is deleted); returns that folder, or None if nothing was there."""
    folder = RunFolder(run_dir)
    old = [
        p for p in (folder.metrics, folder.tables, folder.summary, folder.checkpoints_dir, folder.weights) if p.exists()
    ]
    if not old:
        return None
    n = 1
    while (folder.root / f"replaced-{n}").exists():
        n += 1
    aside = folder.root / f"replaced-{n}"
    aside.mkdir()
    for path in old:
        path.rename(aside / path.name)
    return aside


def rewind_history(run_dir: Path, step: int) -> int:
    """Drop the rows of metrics.jsonl and tables.jsonl logged after `step` (what a killed run logged past its
    last checkpoint, which the resumed run logs again): every step appears once. Returns the rows dropped."""
    folder = RunFolder(run_dir)
    dropped = 0
    for path in (folder.metrics, folder.tables):
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not _logged_after(line, step)]
        if len(kept) != len(lines):
            dropped += len(lines) - len(kept)
            text = "".join(kept)
            atomic_replace(path, lambda tmp, text=text: tmp.write_text(text))
    return dropped


def _logged_after(line: str, step: int) -> bool:
    try:
        row = json.loads(line)
    except ValueError:  # a row cut short by the kill
        return True
    return isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > step
