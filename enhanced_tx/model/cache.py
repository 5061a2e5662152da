"""The decoder's key/value cache for incremental decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DecoderCache:
    """Per-layer keys and values, preallocated once per generation call.

    Self-attention keys/values are written in place at `offset` each step; cross-attention keys/values
    are computed once from the encoder output and never again.
    """

    self_k: torch.Tensor  # (L, B, H, max_len, hd)
    self_v: torch.Tensor  # (L, B, H, max_len, hd)
    cross_k: torch.Tensor  # (L, B, H, S, hd)
    cross_v: torch.Tensor  # (L, B, H, S, hd)
    cross_mask: torch.Tensor | None  # (B, 1, 1, S) bool, True = real source token; None = no padding
    offset: int = 0  # number of target positions already in the cache

    @property
    def max_len(self) -> int:
        return self.self_k.shape[3]

    def reorder(self, index: torch.Tensor) -> DecoderCache:
        """Select batch rows (beam search); returns self, updated in place."""
        self.self_k = self.self_k.index_select(1, index)
        self.self_v = self.self_v.index_select(1, index)
        self.cross_k = self.cross_k.index_select(1, index)
        self.cross_v = self.cross_v.index_select(1, index)
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask.index_select(0, index)
        return self
