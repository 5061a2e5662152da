"""Turn a run's checkpoint (sharded DCP from FSDP, or a full `.pt`) into a weights-only `.safetensors` file.

    python -m enhanced_tx.training.convert RUN_DIR [--checkpoint best|last|auto|PATH] [--output FILE] [--half]

Runs in one process, at any world size the checkpoint was written at. The model is rebuilt from the run's
`config.resolved.yaml` and `tokenizer/`. Default output: `RUN_DIR/<checkpoint name>.safetensors`
(`best.safetensors`, `step_400.safetensors`, ...); `run_generate.py run=RUN_DIR checkpoint=best.safetensors`
reads it. FSDP runs also write `model.safetensors` (the final weights) when training ends.

Sharded checkpoints are read with torch.distributed.checkpoint; its index (a pickle) is read with only the names
an index holds (`enhanced_tx/checkpoint/dcp_metadata.py`), and the run's config builds only shipped classes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from enhanced_tx.checkpoint import CheckpointError, CheckpointManager, save_model_weights_only
from enhanced_tx.data.errors import DataError
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.runfolder import RunFolder


def convert(
    run_dir: str | Path, checkpoint: str = "best", output: str | Path | None = None, half_precision: bool = False
) -> Path:
    """Write the weights of `checkpoint` (of the run in `run_dir`) to a `.safetensors` file; returns its path."""
    from enhanced_tx.checkpoint.sharded import load_model
    from enhanced_tx.data.tokenizers import load_saved_tokenizer
    from enhanced_tx.trusted_targets import instantiate_trusted, read_saved_config

    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.resolved_config.is_file():
        raise EnhancedTxError(f"{run_dir} is not a training run folder (no {folder.resolved_config.name})")
    source = CheckpointManager(folder.checkpoints_dir).resolve(checkpoint)
    if source is None:
        raise CheckpointError(f"no usable checkpoint in {folder.checkpoints_dir}")
    config = read_saved_config(folder.resolved_config)
    tokenizer = load_saved_tokenizer(folder.tokenizer_dir)
    model = instantiate_trusted(config, "model", str(folder.resolved_config), vocab_size=len(tokenizer))
    model = load_model(source, model)
    target = Path(output) if output is not None else run_dir / f"{source.stem}.safetensors"
    save_model_weights_only(model, target, half_precision=half_precision)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enhanced_tx.training.convert", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a training run folder (with config.resolved.yaml and checkpoints/)")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, auto, or a checkpoint path")
    parser.add_argument("--output", default=None, help="the .safetensors (or .pt) file to write")
    parser.add_argument("--half", action="store_true", help="store floating-point weights as fp16")
    args = parser.parse_args(argv)
    try:
        written = convert(args.run_dir, args.checkpoint, args.output, args.half)
    except (EnhancedTxError, DataError, FileNotFoundError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
