"""Weights-only checkpoints: a step file (or a best.pt) holding the model's weights and no optimizer state.

They are written by `trainer.checkpoint=weights` (the default for multirun sweep jobs, which never resume) and
for a `best.pt` once the full step file it shared is pruned. The file is a safetensors file under the
checkpoint's name, laid out exactly as `save_model_weights_only` writes `model.safetensors` (tied weights
stored once, the architecture in the metadata), so a run's `model.safetensors` can be a hard link of its last
step file instead of a second copy. The state's plain entries (step, config, train state, limits, logger run
id) ride along as JSON in the metadata, and a SHA-256 of every tensor's bytes catches damage on disk as the
full format's checksum does. Readers: `format.read_verified` and `weights.load_model_weights`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from enhanced_tx.checkpoint.atomic import atomic_replace
from enhanced_tx.errors import CheckpointError
from enhanced_tx.model.architecture import architecture_from_config

STATE_KEY = "enhanced-tx.checkpoint"  # the JSON of the state's plain entries
DIGEST_KEY = "enhanced-tx.sha256"
_OWN = ("format", "dtype", STATE_KEY, DIGEST_KEY)
_HEADER_LIMIT = 1 << 26  # a safetensors header is JSON; more than this is not one


def save_weights_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Atomically write `state["model"]` (a state dict) and `state`'s plain entries to `path`; no optimizer."""
    from safetensors.torch import _remove_duplicate_names, save_file

    model = state.get("model")
    if not isinstance(model, Mapping) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"a weights-only checkpoint needs a state dict under 'model' ({path})")
    tensors = dict(model)
    metadata = {"format": "pt", "dtype": "native"}
    # what safetensors' save_model does: one name of each tied group stored, the others named in the metadata
    for kept, removed in _remove_duplicate_names(tensors).items():
        for name in removed:
            metadata[name] = kept
            del tensors[name]
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    plain = {k: v for k, v in state.items() if k != "model" and _is_plain(v)}
    plain["optimizer"] = None  # what resume's refusal reads: this state cannot continue a run
    config = state.get("config")
    model_config = config.get("model") if isinstance(config, Mapping) else None
    metadata.update({f"architecture.{k}": v for k, v in architecture_from_config(model_config).items()})
    metadata[STATE_KEY] = json.dumps(plain)
    metadata[DIGEST_KEY] = _digest(tensors)
    atomic_replace(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def is_weights_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a weights-only checkpoint written by `save_weights_checkpoint`."""
    return STATE_KEY in (_metadata(Path(path)) or {})


def read_weights_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[int | None, dict]:
    """(stored step, state) of a weights-only checkpoint after verifying its digest; `state["model"]` has
    every name of the model's state dict (tied ones sharing one tensor) and `state["optimizer"]` is None."""
    from safetensors.torch import load_file

    path = Path(path)
    metadata = _metadata(path) or {}
    try:
        tensors = load_file(str(path), device="cpu")
        plain = json.loads(metadata[STATE_KEY])
    except Exception as e:  # noqa: BLE001 - truncation reads as many kinds of error
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); use another checkpoint") from None
    if _digest(tensors) != metadata.get(DIGEST_KEY):
        raise CheckpointError(
            f"checkpoint {path} is corrupt (checksum mismatch: damaged on disk); use another checkpoint"
        )
    for name, kept in metadata.items():
        if name not in _OWN and not name.startswith("architecture.") and kept in tensors and name not in tensors:
            tensors[name] = tensors[kept]
    if map_location not in (None, "cpu") and not callable(map_location):
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    state = dict(plain) if isinstance(plain, dict) else {}
    state["model"] = tensors
    step = state.get("step")
    return (step if isinstance(step, int) and not isinstance(step, bool) else None), state


def _metadata(path: Path) -> dict[str, str] | None:
    """The safetensors header's metadata, or None for a file that is no safetensors file."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < _HEADER_LIMIT:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else None


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        sha.update(name.encode())
        sha.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


def _is_plain(value: Any) -> bool:
    """JSON round-trips it unchanged (no tensors, tuples or dtypes): what a weights-only state keeps."""
    if value is None or isinstance(value, bool | int | float | str):  # json writes inf/nan and reads them back
        return True
    if type(value) is list:
        return all(_is_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
