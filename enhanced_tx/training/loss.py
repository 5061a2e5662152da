"""The training objective: token-level cross-entropy over the real vocabulary, optionally label-smoothed, plus an
optional z-loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from enhanced_tx.data.collate import IGNORE_INDEX


def token_loss_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    vocab_size: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy summed over the non-padding targets of `labels` [B, T] (logits [B, T, V_padded]), or of
    packed ones [N] (logits [N, V_padded]).

    With `vocab_size` the logits are cut to the real vocabulary first: the rows added to the embedding to
    reach a multiple of 64 are never valid tokens, so the softmax does not normalise over them and label
    smoothing gives them no mass. The result divided by the number of targets equals
    `F.cross_entropy(logits[..., :vocab_size], labels, label_smoothing=...)`.

    `z_loss` > 0 adds `z_loss * log(Z)^2` per target (PaLM's auxiliary loss, log Z the log-partition of the
    real vocabulary's logits): it keeps the logits' normaliser near 1 without changing the argmax.
    """
    if vocab_size is not None:
        logits = logits[..., :vocab_size]
    flat = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V); packed logits (N, V) stay as they are
    targets = labels.flatten()
    loss = F.cross_entropy(flat, targets, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing)
    if z_loss > 0.0:
        loss = loss + z_loss * z_loss_sum(flat, targets)
    return loss


def z_loss_sum(flat_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the non-padding targets of log(Z)^2, Z = sum(exp(logits)) of the position (flat [N, V], [N])."""
    log_z = torch.logsumexp(flat_logits, dim=-1)  # (N,)
    return log_z.square().masked_fill(targets == IGNORE_INDEX, 0.0).sum()
