"""Checkpoints, one idea a module:

- `format`: the checksummed file format, saving, loading and verification (never unpickles code)
- `sniff`: what a file that is not a checkpoint is, for the error message
- `atomic`: atomic, durable writes; cleaning temporary files of dead writers
- `manager`: a folder of `step_N.pt`, `last.pt`, `best.pt` and its retention
- `weights`: weights-only files (`model.safetensors`, a `.pt` state dict)
- `rng`: the random generators' state
- `sharded`: FSDP's sharded checkpoints through torch.distributed.checkpoint (imported on demand: it is heavy)
"""

from enhanced_tx.checkpoint.format import load_checkpoint, read_checkpoint_step, save_checkpoint
from enhanced_tx.checkpoint.manager import CheckpointManager
from enhanced_tx.checkpoint.rng import capture_rng_state, restore_rng_state
from enhanced_tx.checkpoint.weights import (
    check_architecture,
    check_shapes,
    load_model_weights,
    save_model_weights_only,
)
from enhanced_tx.errors import CheckpointError

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "capture_rng_state",
    "check_architecture",
    "check_shapes",
    "load_checkpoint",
    "load_model_weights",
    "read_checkpoint_step",
    "restore_rng_state",
    "save_checkpoint",
    "save_model_weights_only",
]
