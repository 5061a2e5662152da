"""Cheap checks of a training config before any data is read or any file is written.

Every failure names the config keys and the fix, so an impossible run fails in a second, not after the
tokenizer has been trained.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from enhanced_tx.errors import ConfigError


def check_training_config(cfg: DictConfig) -> None:
    """Build the model on the meta device (no memory) and the trainer, and check optimiser values."""
    with torch.device("meta"):
        instantiate(cfg.model, vocab_size=64)  # architecture errors (d_model / heads, rope head dim, ...)
    instantiate(cfg.trainer)  # batch size, accumulation, limits
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise ConfigError(f"optimizer.lr={lr} must be positive, e.g. optimizer.lr=1e-3")
    weight_decay = cfg.optimizer.get("weight_decay")
    if weight_decay is not None and weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={weight_decay} must be >= 0")


def check_lengths(model, data) -> None:
    """The data's longest source/target must fit the model's position range (named keys on failure)."""
    src = getattr(data, "src_len", None) or getattr(data, "max_src_len", None)
    tgt = getattr(data, "tgt_len", None) or getattr(data, "max_tgt_len", None)
    if src and tgt and max(src, tgt) > model.max_seq_len:
        raise ConfigError(
            f"the data asks for {src} source / {tgt} target tokens but model.max_seq_len={model.max_seq_len}; "
            "raise model.max_seq_len or lower data.src_len/data.tgt_len (data.max_src_len/max_tgt_len for pairs)"
        )
