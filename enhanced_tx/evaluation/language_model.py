"""Loss and perplexity of a model on a dataset (text / sample data), by the trainer's Evaluator: one loss path."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from enhanced_tx.data.collate import Collator
from enhanced_tx.training.distributed import SingleProcess
from enhanced_tx.training.evaluator import Evaluator
from enhanced_tx.training.precision import Precision


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
    evaluator = Evaluator(dataset, collator, batch_size=batch_size, max_batches=None, precision=Precision(),
                          device=device, strategy=SingleProcess())  # fmt: skip
    began = time.perf_counter()
    with tqdm(total=math.ceil(len(dataset) / batch_size), desc="loss", unit="batch", disable=not progress,
              dynamic_ncols=True) as bar:  # fmt: skip
        totals = evaluator.totals(model, progress=bar.update)
    seconds = time.perf_counter() - began
    loss, targets, tokens = totals.loss, totals.targets, totals.tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "target_tokens": targets,
        "windows": len(dataset),
        "seconds": seconds,
        "tokens_per_s": tokens / max(seconds, 1e-9),
    }
