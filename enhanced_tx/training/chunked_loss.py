"""The training loss without the full logits: the tied head and the cross-entropy, chunk by chunk of rows.

The logits of a step (B*T rows x the vocabulary, fp32 in the loss) are the largest single activation of a
big-vocabulary model. `chunked_token_loss_sum` takes the decoder's final hidden states instead, and for
each chunk of rows computes logits = hidden_chunk @ W[:vocab]^T and their loss sum inside
`torch.utils.checkpoint`: the forward keeps only the chunk's inputs (views of the hidden states and the
weight), the backward recomputes the chunk's logits. Same loss and gradients as `token_loss_sum` on the
full logits (up to fp32 summation order), for about 1/3 more head FLOPs (the recomputed chunk matmuls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from enhanced_tx.data.collate import IGNORE_INDEX
from enhanced_tx.model.linear import linear
from enhanced_tx.training.loss import z_loss_sum


def _chunk_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    backend: str,
    label_smoothing: float,
    z_loss: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss sum with the z-loss, the z-loss's share) of one chunk: hidden [N, D], weight [V, D], targets [N]."""
    logits = linear(hidden, weight, backend).float()  # (N, V): under autocast the matmul is bf16, as the head's
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing)
    if z_loss <= 0.0:
        return loss, loss.new_zeros(())
    z = z_loss * z_loss_sum(logits, targets)
    return loss + z, z


def chunked_token_loss_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    vocab_size: int,
    chunk_rows: int,
    backend: str = "default",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_loss_sum(hidden @ weight.T, labels, vocab_size=...)` without materialising the logits.

    hidden [B, T, D] (the decoder's output after its final norm), weight [V_padded, D] (the tied head),
    labels [B, T]. Only the first `vocab_size` rows of `weight` take part: the padded rows are never valid
    tokens, so the softmax does not normalise over them and they get no gradient. Returns (loss sum, the
    z-loss's share of it, detached) so that the caller never needs the logits to log train/z_loss.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be >= 1")
    real = weight[:vocab_size]  # a view: the gradient lands in the padded parameter's first rows
    flat, targets = hidden.reshape(-1, hidden.shape[-1]), labels.flatten()  # packed (N, D) and (N,) as they are
    if backend == "auto":  # its first matmul of a weight shape may time the candidates: here, not inside a
        with torch.no_grad():  # checkpoint, whose recomputation must save the same tensors as its forward
            linear(flat[:1], real, backend)
    total = hidden.new_zeros((), dtype=torch.float32)
    z_total = hidden.new_zeros((), dtype=torch.float32)
    for h, t in zip(flat.split(chunk_rows), targets.split(chunk_rows), strict=True):
        if torch.is_grad_enabled():  # recompute the chunk's logits in the backward instead of keeping them
            loss, z = checkpoint(
                _chunk_loss, h, real, t, backend, label_smoothing, z_loss, use_reentrant=False, preserve_rng_state=False
            )
        else:
            loss, z = _chunk_loss(h, real, t, backend, label_smoothing, z_loss)
        total = total + loss
        z_total = z_total + z.detach()
    return total, z_total
