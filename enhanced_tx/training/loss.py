"""The training objective: token-level cross-entropy, optionally label-smoothed over the real vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from enhanced_tx.data.collate import IGNORE_INDEX


def token_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, *, vocab_size: int | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy summed over the non-padding targets of `labels` [B, T] (logits [B, T, V_padded]).

    With `label_smoothing` > 0 the logits are cut to the real vocabulary first (`vocab_size`), so the
    smoothing mass goes to tokens that exist, not to the padded rows of the embedding. The result then
    divided by the number of targets equals `F.cross_entropy(logits[..., :vocab_size], labels,
    label_smoothing=...)`. Without smoothing this is the plain summed cross-entropy over all logits.
    """
    if label_smoothing > 0.0 and vocab_size is not None:
        logits = logits[..., :vocab_size]
    return F.cross_entropy(
        logits.flatten(0, 1).float(),
        labels.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
