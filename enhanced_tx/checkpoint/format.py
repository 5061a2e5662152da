"""The checkpoint file format: atomic, checksummed, and loadable with `torch.load(weights_only=True)` only.

A full checkpoint file is an outer dict that `torch.load(weights_only=True)` reads directly::

    {"format": "enhanced-tx/checkpoint", "version": 1, "step": N | None,
     "sha256": hex digest of the payload, "payload": uint8 tensor (the state, serialised by torch.save)}

The digest covers every byte of the state, so truncation and bit flips are reported instead of resuming
from silently wrong weights. The state itself may hold only tensors and plain containers, and it is
loaded with `weights_only=True` too: a checkpoint is never a way to run code.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from enhanced_tx.checkpoint.atomic import atomic_replace
from enhanced_tx.checkpoint.lean import is_weights_checkpoint, read_weights_checkpoint
from enhanced_tx.checkpoint.pointer import follow
from enhanced_tx.checkpoint.sniff import describe_non_torch_file
from enhanced_tx.errors import CheckpointError

FORMAT = "enhanced-tx/checkpoint"


VERSION = 1


_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def save_checkpoint(state: dict, path: str | os.PathLike, *, step: int | None = None) -> None:
    """Atomically write ``state`` to ``path``; ``step`` (default ``state["step"]``) goes in the metadata."""
    outer = _wrap(state, step)
    atomic_replace(Path(path), lambda tmp: save_torch_file(outer, tmp))


def _wrap(state: dict, step: int | None) -> dict:
    """The outer dict of a checkpoint file: metadata plus the serialised state as a uint8 tensor."""
    if not isinstance(state, dict):
        raise CheckpointError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    _check_plain(state, "state")
    if step is None and isinstance(state.get("step"), int) and not isinstance(state.get("step"), bool):
        step = state["step"]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    view = buffer.getbuffer()  # no copy: a large model's state is held once, not three times
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "sha256": hashlib.sha256(view).hexdigest(),
        "payload": torch.frombuffer(view, dtype=torch.uint8),
    }


def save_torch_file(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (never unpickles code)."""
    return _read_verified(Path(path), map_location)[1]


def read_checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step stored in a checkpoint's metadata, after verifying its checksum."""
    return _read_verified(Path(path), "cpu")[0]


def read_verified(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[int | None, dict]:
    """(stored step, state) of a checkpoint after verifying it: one read for callers that need both."""
    return _read_verified(Path(path), map_location)


def _read_verified(path: Path, map_location: Any) -> tuple[int | None, dict]:
    if path.is_file() and is_weights_checkpoint(follow(path)):  # weights only (trainer.checkpoint=weights)
        return read_weights_checkpoint(follow(path), map_location)
    outer = safe_torch_load(path, map_location="cpu")
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an enhanced-tx checkpoint (no format marker); "
            "for a weights-only file (.safetensors or a state dict) use load_model_weights"
        )
    version = outer.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, this enhanced-tx reads up to {VERSION}; "
            "upgrade enhanced-tx"
        )
    payload = outer.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"checkpoint {path} is corrupt (no payload); use another checkpoint")
    if hashlib.sha256(payload.numpy()).hexdigest() != outer.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt (checksum mismatch: truncated or damaged on disk); "
            "resume from another one (trainer.resume=auto picks the newest good one)"
        )
    data = io.BytesIO(payload.numpy())
    step = outer.get("step")
    del outer, payload  # keep one copy of the serialised state in memory, not two
    state = safe_torch_load(data, map_location=map_location, name=str(path))
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt (state is not a dict); use another checkpoint")
    return (step if isinstance(step, int) else None), state


def safe_torch_load(source: Path | io.BytesIO, map_location: Any, name: str | None = None) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one clear CheckpointError."""
    if isinstance(source, Path):
        source = follow(source)  # last.pt / best.pt name a step file
    name = name or str(source)
    if isinstance(source, Path) and not source.is_file():
        raise CheckpointError(
            f"checkpoint {name} does not exist; check the path, or pass checkpoint=last|best "
            "for a run folder that has checkpoints/"
        )
    what = describe_non_torch_file(source) if isinstance(source, Path) else None
    if what is not None:  # a text file is not "pickled objects" nor "corrupt (101)": say what it is
        raise CheckpointError(
            f"{name} is corrupt or not a checkpoint at all: it is {what}; pass a .pt file written by enhanced-tx"
        )
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f" ({found.group(1)})" if found else ""
            # never retry with weights_only=False: that is exactly how a malicious file runs its code
            raise CheckpointError(
                f"refused to load {name}: it contains pickled Python objects that could run code{what}; "
                "only load checkpoints you trust, and share models as .safetensors"
            ) from None
        raise CheckpointError(f"checkpoint {name} is corrupt ({e}); use another checkpoint") from None
    except OSError as e:
        if e.errno == errno.EINVAL:  # torch's zip reader on a cut-off file: not a file-system problem
            raise CheckpointError(f"checkpoint {name} is corrupt or truncated; use another checkpoint") from None
        raise CheckpointError(f"cannot read checkpoint {name}: {e.strerror or e}") from None
    except Exception as e:  # torch reports truncation as RuntimeError, EOFError, KeyError, ...
        detail = str(e).split(". ")[0].strip() or type(e).__name__
        raise CheckpointError(f"checkpoint {name} is corrupt or truncated ({detail}); use another checkpoint") from None


def _check_plain(value: Any, where: str) -> None:
    """Reject what a weights_only load would refuse, naming where it sits (cheaper to fix at save time)."""
    if isinstance(value, (torch.Tensor, *_SCALARS)):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    hint = " (OmegaConf.to_container(cfg, resolve=True))" if "omegaconf" in type(value).__module__ else ""
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a weights_only load "
        f"refuses; store tensors and plain dict/list/str/int/float/bool/None only{hint}"
    )
