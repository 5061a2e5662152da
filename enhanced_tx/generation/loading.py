"""Rebuild a trained run for generation: its resolved config, its tokenizer and a weights file.

A training run folder (what `run_train.py` writes) holds `config.resolved.yaml` (every `${...}` resolved:
the model is rebuilt from this, not from `.hydra/config.yaml`), `tokenizer/` (save_pretrained),
`checkpoints/{best,last,step_N}.pt` (full training state) and `model.safetensors` (weights only).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerFast

from enhanced_tx.checkpoint import (
    CheckpointError,
    CheckpointManager,
    check_architecture,
    load_checkpoint,
    load_model_weights,
)
from enhanced_tx.data.tokenizers import load_saved_tokenizer
from enhanced_tx.errors import ConfigError
from enhanced_tx.model import EncoderDecoder
from enhanced_tx.model.architecture import architecture_from_config
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.runs import best_run
from enhanced_tx.trusted_targets import instantiate_trusted, read_saved_config


@dataclass(frozen=True)
class LoadedRun:
    model: EncoderDecoder  # in eval mode, on the requested device and dtype
    tokenizer: PreTrainedTokenizerFast
    config: DictConfig  # the run's resolved training config
    run_dir: Path
    weights: Path  # the file the weights came from


def _weight_files(run_dir: Path) -> list[Path]:
    folder = RunFolder(run_dir)
    return [p for p in [folder.weights, *folder.checkpoints_dir.glob("*.pt")] if p.is_file()]


def find_latest_run(roots: Sequence[str | Path]) -> Path:
    """The training run under `roots` whose weights were written last (runs without weights are skipped)."""
    newest: tuple[float, Path] | None = None
    for root in map(Path, roots):
        for config in root.glob(f"**/{RunFolder(root).resolved_config.name}") if root.is_dir() else ():
            written = [p.stat().st_mtime for p in _weight_files(config.parent)]
            if written and (newest is None or max(written) > newest[0]):
                newest = (max(written), config.parent)
    if newest is None:
        searched = ", ".join(str(Path(r).resolve()) for r in roots)
        raise ConfigError(f"run=latest found no trained run (with weights) under {searched}; train one first")
    return newest[1]


def resolve_run_dir(run: str | Path, roots: Sequence[str | Path], sweep: str | Path | None = None) -> Path:
    """`latest` (see `find_latest_run`), `best` (the best job of `sweep`, default the newest sweep under
    `roots`; says which on stderr) or a run folder."""
    if str(run) == "best":
        pick = best_run(roots, sweep)
        print(pick.describe(), file=sys.stderr)
        run_dir = pick.job.job_dir
    else:
        run_dir = find_latest_run(roots) if str(run) == "latest" else Path(run).expanduser()
    if not RunFolder(run_dir).resolved_config.is_file():
        raise ConfigError(
            f"run={run_dir} is not a training run folder (no {RunFolder(run_dir).resolved_config.name}); "
            "pass run=latest or the "
            "folder run_train.py printed"
        )
    return run_dir


def resolve_weights(run_dir: Path, checkpoint: str | Path) -> Path:
    """`best`, `last`, `auto` (newest good checkpoint), `ema` (the weights' moving average, callbacks=[ema]),
    or a file: as given, or relative to the run folder (e.g. `model.safetensors` or `checkpoints/step_400.pt`)."""
    folder = RunFolder(run_dir)
    if str(checkpoint) == "ema":
        if not folder.ema_weights.is_file():
            raise ConfigError(f"checkpoint=ema: {folder.ema_weights} does not exist; train with callbacks=[ema]")
        return folder.ema_weights
    spec = Path(str(checkpoint)).expanduser()
    if not spec.is_file() and (run_dir / spec).is_file():
        return run_dir / spec
    return CheckpointManager(folder.checkpoints_dir).resolve(str(checkpoint))


def load_run(
    run_dir: str | Path,
    checkpoint: str | Path = "best",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedRun:
    """Model (weights cast to `dtype`, eval mode) and tokenizer of a run folder.

    The folder is untrusted input: its config builds only the model classes the project ships
    (`enhanced_tx.trusted_targets`) and its tokenizer is read from local files only."""
    run_dir = Path(run_dir)
    weights = resolve_weights(run_dir, checkpoint)
    folder = RunFolder(run_dir)
    config = read_saved_config(folder.resolved_config)
    tokenizer = load_saved_tokenizer(folder.tokenizer_dir)
    model = instantiate_trusted(config, "model", str(folder.resolved_config), vocab_size=len(tokenizer))
    _load_weights(model, weights)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedRun(model=model, tokenizer=tokenizer, config=config, run_dir=run_dir, weights=weights)


def _load_weights(model: torch.nn.Module, weights: Path) -> None:
    """Weights-only files and full checkpoints; an FSDP run's checkpoint points at its DCP shards."""
    from enhanced_tx.checkpoint import sharded as sharded_checkpoint

    state = None
    if weights.suffix == ".pt":
        try:
            state = load_checkpoint(weights)
        except CheckpointError:  # a weights-only state dict, not one of our full checkpoints
            state = None
    if state is not None and sharded_checkpoint.is_sharded(state):
        config = state.get("config")
        model_config = config.get("model") if isinstance(config, Mapping) else None
        check_architecture(weights, architecture_from_config(model_config), model)
        sharded_checkpoint.load(state, weights, model)
    else:
        load_model_weights(model, weights)
