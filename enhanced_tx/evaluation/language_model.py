"""Validation loss and perplexity of a model on a dataset (text / sample data: the continuation objective)."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from enhanced_tx.data.collate import Collator
from enhanced_tx.training.loss import token_loss_sum


@torch.inference_mode()
def evaluate_loss(
    model: nn.Module,
    dataset: Dataset,
    collator: Collator,
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
) -> dict:
    """Mean cross-entropy per target token over every item of `dataset` (in order), and its exponential."""
    if len(dataset) == 0:
        from enhanced_tx.errors import ConfigError

        raise ConfigError("the evaluation data holds no complete window; use a longer file or shorter data lengths")
    model.eval()
    total, targets, tokens = 0.0, 0, 0
    began = time.perf_counter()
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="loss", unit="batch", disable=not progress, dynamic_ncols=True):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]).to(device)
        logits = model(batch.src, batch.tgt_in, batch.src_mask)
        total += float(token_loss_sum(logits, batch.labels).double())
        targets += int(batch.num_tgt_tokens)
        tokens += int(batch.num_tokens)
    seconds = time.perf_counter() - began
    loss = total / max(targets, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "target_tokens": targets,
        "windows": len(dataset),
        "seconds": seconds,
        "tokens_per_s": tokens / max(seconds, 1e-9),
    }
