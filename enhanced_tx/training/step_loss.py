"""One micro-batch's training loss: the forward pass and the loss, through the full logits or in chunks.

`trainer.loss_chunk_tokens=N` (conf/trainer/default.yaml): a micro-batch with more than N target rows
(B x T, padding included) takes the chunked path (`chunked_loss`): the model returns its final hidden states
and the loss applies the tied head N rows at a time, so the full fp32 logits are never held. Smaller batches
(and null) keep the full-logits path, which skips the chunks' recomputed head matmuls in the backward.

`trainer.pack_tokens` (enhanced_tx.model.packing): the padding-free path, where the model's position-wise
layers and the head run on the real tokens only and the loss sees the labels at those positions.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from enhanced_tx.model.packing import causal_prefix
from enhanced_tx.training.chunked_loss import chunked_token_loss_sum
from enhanced_tx.training.loss import token_loss_sum, z_loss_sum


def _is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor (FSDP2 keeps parameters as sharded DTensors outside its modules' forward),
    read from the imported module rather than importing it: torch.distributed.tensor takes ~1 s to import, and
    a run that never imported it holds no DTensor."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def chunks_for(model: nn.Module, rows: int, chunk_tokens: int | None) -> int | None:
    """Rows per chunk for a micro-batch of `rows` target positions, or None for the full-logits path.

    Chunked only for our tied-head model with a plain head weight: a sharded one (FSDP) cannot be multiplied
    outside the model's forward, so FSDP runs keep the full logits.
    """
    if chunk_tokens is None or rows <= chunk_tokens or not hasattr(model, "padded_vocab_size"):
        return None
    return None if _is_dtensor(model.embed.weight) else chunk_tokens


# auto packs a CPU batch with at least this share of padding; below it the gathers cost about what they save
PACK_MIN_PADDING = 0.1


def packed_positions(model: nn.Module, batch: Any, pack: bool | str) -> torch.Tensor | None:
    """The target positions (B, T) bool the padding-free path computes, or None for the padded path.

    `pack`: true, false or auto (CPU batches with >= PACK_MIN_PADDING of their positions padding; the GPU
    path is not measured, and the count would cost a host sync there). Only our model has the path.
    """
    if pack is False or not hasattr(model, "padded_vocab_size"):
        return None
    positions = causal_prefix(batch.labels)
    if pack == "auto":
        if batch.labels.device.type != "cpu":
            return None
        real = int(batch.src_mask.sum()) + int(positions.sum())
        if 1.0 - real / (batch.src_mask.numel() + positions.numel()) < PACK_MIN_PADDING:
            return None
    return positions


def padding_free_inputs(model: nn.Module, batch: Any, pack: bool | str) -> tuple[torch.Tensor, dict]:
    """(the labels the loss compares with, the extra forward arguments): (B, T) and none on the padded path,
    the labels at `packed_positions` (N,) and its `tgt_mask` on the padding-free one."""
    positions = packed_positions(model, batch, pack)
    if positions is None:
        return batch.labels, {}
    return batch.labels[positions], {"tgt_mask": positions}


def batch_flops(model: nn.Module, batch: Any, pack: bool | str) -> float:
    """Forward matmul FLOPs of a micro-batch as it runs: at its padded shapes, or on the padding-free path at
    its real tokens' mean lengths (exact for the position-wise layers; attention, which runs padded, near)."""
    positions = packed_positions(model, batch, pack)
    b = len(batch)
    if positions is None:
        return b * model.forward_flops(batch.src.shape[1], batch.tgt_in.shape[1])
    return b * model.forward_flops(int(batch.src_mask.sum()) / b, int(positions.sum()) / b)


def micro_batch_loss(
    forward: Any,
    model: nn.Module,
    batch: Any,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_tokens: int | None = None,
    pack: bool | str = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss sum over the batch's targets, z-loss included; the z-loss's share, detached).

    `forward` is what the step calls (the DDP wrapper, compiled or not), `model` the plain module (its
    vocabulary size, head weight and linear backend). Call it under the precision's autocast. `pack`: see
    `packed_positions` (false under torch.compile, whose shapes would change with every batch's token count).
    """
    labels, packing = padding_free_inputs(model, batch, pack)  # (B, T) and {}, or (N,) and its tgt_mask
    rows = chunks_for(model, labels.numel(), chunk_tokens)
    if rows is not None:
        hidden = forward(batch.src, batch.tgt_in, batch.src_mask, hidden=True, **packing)
        return chunked_token_loss_sum(
            hidden,
            model.embed.weight,
            labels,
            vocab_size=model.vocab_size,
            chunk_rows=rows,
            backend=model.linear_backend,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
        )
    logits = forward(batch.src, batch.tgt_in, batch.src_mask, **packing)
    summed = token_loss_sum(logits, labels, vocab_size=model.vocab_size, label_smoothing=label_smoothing, z_loss=z_loss)
    share = torch.zeros((), device=summed.device)
    if z_loss:  # its share of the loss, for train/z_loss (token_loss_sum returns only the total)
        with torch.no_grad():
            real = logits[..., : model.vocab_size].reshape(-1, model.vocab_size).float()
            share = z_loss * z_loss_sum(real, labels.flatten())
    return summed, share
