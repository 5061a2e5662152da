"""One micro-batch's training loss: the forward pass and the loss, through the full logits or in chunks.

`trainer.loss_chunk_tokens=N` (conf/trainer/default.yaml): a micro-batch with more than N target rows
(B x T, padding included) takes the chunked path (`chunked_loss`): the model returns its final hidden states
and the loss applies the tied head N rows at a time, so the full fp32 logits are never held. Smaller batches
(and null) keep the full-logits path, which skips the chunks' recomputed head matmuls in the backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from enhanced_tx.training.chunked_loss import chunked_token_loss_sum
from enhanced_tx.training.loss import token_loss_sum, z_loss_sum

try:  # FSDP2 keeps parameters as sharded DTensors outside its modules' forward
    from torch.distributed.tensor import DTensor
except ImportError:  # a build without torch.distributed
    DTensor = ()


def chunks_for(model: nn.Module, rows: int, chunk_tokens: int | None) -> int | None:
    """Rows per chunk for a micro-batch of `rows` target positions, or None for the full-logits path.

    Chunked only for our tied-head model with a plain head weight: a sharded one (FSDP) cannot be multiplied
    outside the model's forward, so FSDP runs keep the full logits.
    """
    if chunk_tokens is None or rows <= chunk_tokens or not hasattr(model, "padded_vocab_size"):
        return None
    return None if isinstance(model.embed.weight, DTensor) else chunk_tokens


def micro_batch_loss(
    forward: Any,
    model: nn.Module,
    batch: Any,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss sum over the batch's targets, z-loss included; the z-loss's share, detached).

    `forward` is what the step calls (the DDP wrapper, compiled or not), `model` the plain module (its
    vocabulary size, head weight and linear backend). Call it under the precision's autocast.
    """
    rows = chunks_for(model, batch.labels.numel(), chunk_tokens)
    if rows is not None:
        hidden = forward(batch.src, batch.tgt_in, batch.src_mask, hidden=True)
        return chunked_token_loss_sum(
            hidden,
            model.embed.weight,
            batch.labels,
            vocab_size=model.vocab_size,
            chunk_rows=rows,
            backend=model.linear_backend,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
        )
    logits = forward(batch.src, batch.tgt_in, batch.src_mask)
    summed = token_loss_sum(
        logits, batch.labels, vocab_size=model.vocab_size, label_smoothing=label_smoothing, z_loss=z_loss
    )
    share = torch.zeros((), device=summed.device)
    if z_loss:  # its share of the loss, for train/z_loss (token_loss_sum returns only the total)
        with torch.no_grad():
            real = logits[..., : model.vocab_size].flatten(0, 1).float()
            share = z_loss * z_loss_sum(real, batch.labels.flatten())
    return summed, share
