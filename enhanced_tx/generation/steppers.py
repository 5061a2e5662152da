"""Where a search gets next-token scores from: the KV-cached decoder, or a full recompute (the reference).

A stepper is fed the newest token of every row, `[B, 1]`, and returns that row's next-token scores,
`[B, V_padded]` in float32 with the padded vocabulary ids already at -inf, so no search can pick them.
`reorder(index)` selects (and may repeat) rows, which is how beam search expands and prunes its beams.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from enhanced_tx.generation.logits import mask_padded_vocab
from enhanced_tx.model import EncoderDecoder


class Stepper(Protocol):
    batch_size: int
    device: torch.device

    def __call__(self, tokens: Tensor) -> Tensor: ...

    def reorder(self, index: Tensor) -> None: ...


class CachedStepper:
    """One token per step through the decoder, with the model's preallocated KV cache.

    The encoder runs once, and cross-attention keys/values are projected once in `init_cache`.
    """

    def __init__(self, model: EncoderDecoder, src: Tensor, src_mask: Tensor | None, max_len: int) -> None:
        self.model = model
        memory = model.encode(src, src_mask)  # (B, S, D)
        self.cache = model.init_cache(memory, src_mask, max_len)
        self.batch_size, self.device = src.shape[0], src.device

    def __call__(self, tokens: Tensor) -> Tensor:
        logits, self.cache = self.model.decode_step(tokens, self.cache)  # (B, 1, V_padded)
        return mask_padded_vocab(logits[:, -1].float(), self.model.vocab_size)  # (B, V_padded)

    def reorder(self, index: Tensor) -> None:
        self.cache = self.cache.reorder(index)
        self.batch_size = index.shape[0]


class RecomputeStepper:
    """No cache: every step runs the full model over the source and the whole target prefix."""

    def __init__(self, model: EncoderDecoder, src: Tensor, src_mask: Tensor | None) -> None:
        self.model, self.src, self.src_mask = model, src, src_mask
        self.prefix = src.new_empty(src.shape[0], 0)  # (B, t): BOS and the tokens fed so far
        self.batch_size, self.device = src.shape[0], src.device

    def __call__(self, tokens: Tensor) -> Tensor:
        self.prefix = torch.cat([self.prefix, tokens], dim=1)  # (B, t+1)
        logits = self.model(self.src, self.prefix, self.src_mask)  # (B, t+1, V_padded)
        return mask_padded_vocab(logits[:, -1].float(), self.model.vocab_size)

    def reorder(self, index: Tensor) -> None:
        self.src, self.prefix = self.src[index], self.prefix[index]
        self.src_mask = None if self.src_mask is None else self.src_mask[index]
        self.batch_size = index.shape[0]
