"""Warm start (`trainer.init_from`): a new run begins from another run's weights.

Only the weights move over: the optimizer, the learning-rate schedule, the step counter and the best
validation loss start fresh, unlike `trainer.resume`, which continues a run exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from enhanced_tx.checkpoint import CheckpointError, load_model_weights

# Looked for, in this order, when init_from names a run folder.
RUN_FILES = ("checkpoints/best.pt", "checkpoints/last.pt", "model.safetensors")


def resolve_init_from(spec: str | os.PathLike) -> Path:
    """A run folder (its best.pt, else last.pt, else model.safetensors), a checkpoints/ folder, or a file."""
    path = Path(spec).expanduser()
    if path.is_dir():
        candidates = [path / name for name in RUN_FILES] + [path / "best.pt", path / "last.pt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(
                f"trainer.init_from={spec}: found none of {', '.join(RUN_FILES)} in {path}; "
                "pass a run folder or a checkpoint/weights file"
            )
        return found
    if not path.is_file():
        raise CheckpointError(f"trainer.init_from={spec} does not exist; pass a run folder or a .pt/.safetensors file")
    return path


def source_run_dir(weights: Path) -> Path:
    """The run folder a weights file belongs to (`RUN/checkpoints/x.pt` or `RUN/model.safetensors`)."""
    return weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent


def source_tokenizer_dir(spec: str | os.PathLike) -> Path | None:
    """The source run's saved tokenizer, which a warm-started run must use (same token ids); None if absent."""
    folder = source_run_dir(resolve_init_from(spec)) / "tokenizer"
    return folder if (folder / "tokenizer.json").is_file() else None


def warm_start(model: nn.Module, spec: str | os.PathLike) -> Path:
    """Load weights only into `model` (shapes and names checked); returns the file used."""
    path = resolve_init_from(spec)
    try:
        load_model_weights(model, path)
    except CheckpointError as error:
        raise CheckpointError(
            f"trainer.init_from={spec} does not fit this model: {error}. Use the source run's model "
            "settings (model, norm, positional, feedforward, model.max_seq_len for learned positions)"
        ) from None
    return path
