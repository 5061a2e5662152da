"""Padding-free training: the real tokens of a padded batch, packed into one (N, ...) tensor.

Everything in a block but attention is position-wise (linears, norms, feed-forwards, dropout), so it can run
on the N real tokens of a (B, T) batch instead of all B x T positions: on random batches of short pairs, which
pad about 60% of their positions, that skips most of a training step's matmul FLOPs. Attention unpacks its
projections to (B, T, ...) (zeros at the padding, which the key mask or causality hides) and packs its
output again before the output projection. The values at the real positions are the padded path's, up to
float summation order (tests/test_packing.py).
"""

from __future__ import annotations

import torch


class Packing:
    """Which positions of a (B, T) batch are real, and the moves between the padded and packed layouts.

    `mask` (B, T) bool, True = real. For a causal decoder every row's True positions must come first (a
    prefix): a real position after a hole would attend to zeros where the padded path has the hole's token.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        if mask.dim() != 2 or mask.dtype != torch.bool:
            raise ValueError(f"a packing mask is (batch, length) bool; got {tuple(mask.shape)} {mask.dtype}")
        self.batch, self.length = mask.shape
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the real tokens

    @property
    def tokens(self) -> int:
        return self.index.numel()

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, *F) -> (N, *F): the real positions, row by row."""
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *F) -> (B, T, *F) with zeros at the padding."""
        flat = x.new_zeros(self.batch * self.length, *x.shape[1:])
        return flat.index_copy(0, self.index, x).view(self.batch, self.length, *x.shape[1:])


def causal_prefix(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(B, T) labels -> (B, T) bool: each row's positions up to its last real label.

    The decoder positions a loss needs: a causal decoder's later positions change nothing before them, and
    ignored labels inside a row (a prompt the loss skips) stay, as context for the ones after.
    """
    real = (labels != ignore_index).int()
    return real.flip(1).cummax(1).values.flip(1).bool()
