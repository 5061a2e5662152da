"""`last.pt` and `best.pt` as pointers: a few bytes naming the step file they stand for, never a second copy.

A pointer is JSON, `{"format": "enhanced-tx/checkpoint-pointer", "target": "step_N.pt"}`, in the same folder
as its target; every reader of a `.pt` file here follows it (`follow`), so `load_checkpoint(last.pt)` reads
`step_N.pt`. Writers swap pointers in atomically; retention keeps every step file a pointer names.
"""

from __future__ import annotations

import json
from pathlib import Path

from enhanced_tx.checkpoint.atomic import atomic_replace
from enhanced_tx.errors import CheckpointError

FORMAT = "enhanced-tx/checkpoint-pointer"
_MAX_BYTES = 1024


def write_pointer(path: Path, target: Path) -> None:
    if target.parent.resolve() != path.parent.resolve():
        raise CheckpointError(f"a checkpoint pointer must name a file in its own folder ({path} -> {target})")
    text = json.dumps({"format": FORMAT, "target": target.name}) + "\n"
    atomic_replace(path, lambda tmp: tmp.write_text(text))


def target_of(path: Path) -> Path | None:
    """The step file `path` points to, or None when `path` is not a pointer (a real checkpoint, or absent)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return None
        head = path.read_bytes()
    except OSError:
        return None
    if not head.startswith(b"{"):
        return None
    try:
        record = json.loads(head)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    name = record.get("target")
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(f"checkpoint pointer {path} names {name!r}, not a file beside it; use another checkpoint")
    return path.parent / name


def follow(path: Path) -> Path:
    """`path`, or the step file it points to (which must exist)."""
    target = target_of(path)
    if target is None:
        return path
    if not target.is_file():
        raise CheckpointError(
            f"checkpoint {path} points to {target.name}, which is gone; resume from another one "
            "(trainer.resume=auto picks the newest good one)"
        )
    return target
