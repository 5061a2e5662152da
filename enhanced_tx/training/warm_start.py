"""Warm start (`trainer.init_from`): a new run begins from another run's weights.

Only the weights move over: the optimizer, the learning-rate schedule, the step counter and the best
validation loss start fresh, unlike `trainer.resume`, which continues a run exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from enhanced_tx.checkpoint import CheckpointError, load_model_weights
from enhanced_tx.runfolder import RunFolder, checkpoint_file


def resolve_init_from(spec: str | os.PathLike) -> Path:
    """A run folder (its best.pt, else last.pt, else model.safetensors), a checkpoints/ folder, or a file."""
    path = Path(spec).expanduser()
    if path.is_dir():
        run = RunFolder(path)  # looked for in this order; or path is a checkpoints/ folder itself
        candidates = [run.checkpoint("best"), run.checkpoint("last"), run.weights]
        candidates += [checkpoint_file(path, "best"), checkpoint_file(path, "last")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            names = ", ".join(str(c.relative_to(path)) for c in candidates[:3])
            raise CheckpointError(
                f"trainer.init_from={spec}: found none of {names} in {path}; "
                "pass a run folder or a checkpoint/weights file"
            )
        return found
    if not path.is_file():
        raise CheckpointError(f"trainer.init_from={spec} does not exist; pass a run folder or a .pt/.safetensors file")
    return path


def source_tokenizer_dir(spec: str | os.PathLike) -> Path | None:
    """The source run's saved tokenizer, which a warm-started run must use (same token ids); None if absent."""
    folder = RunFolder.of_file(resolve_init_from(spec)).tokenizer_dir
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
