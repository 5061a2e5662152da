"""Relative positions as a bias on the self-attention scores: T5's learned buckets and ALiBi's slopes.

Both return `attention_bias(q_len, k_len, offset, causal) -> (H, T, S)` and leave the embeddings and
queries/keys alone. A float bias rules out SDPA's flash kernels on GPUs (PyTorch then takes the
memory-efficient or math kernel), so rope stays the fast default.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from enhanced_tx.model.positional import PositionalScheme


def relative_distances(q_len: int, k_len: int, offset: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, S) long: key position minus query position, queries at offset .. offset+T-1, keys at 0 .. S-1."""
    queries = torch.arange(offset, offset + q_len, device=device)
    keys = torch.arange(k_len, device=device)
    return keys[None, :] - queries[:, None]


def t5_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucket of each relative distance (key - query): exact buckets for small distances, logarithmic
    ones up to `max_distance`, one last bucket beyond. Bidirectional uses half the buckets for each side;
    causal maps every future key to bucket 0 (masked anyway)."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # distance.clamp(min=1) only keeps log() finite where is_small discards the value anyway
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class T5RelativeBias(PositionalScheme):
    """T5's bucketed relative position bias (Raffel et al., 2020): one learned scalar per (bucket, head).

    One instance per stack, so the table is shared by the layers of that stack, as in T5; the encoder's
    buckets are bidirectional, the decoder's causal (the model asks with `causal=True` there).
    """

    def __init__(
        self, d_model: int, n_heads: int, max_seq_len: int, num_buckets: int = 32, max_distance: int = 128
    ) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Parameter(torch.empty(num_buckets, n_heads))
        nn.init.normal_(self.relative_attention_bias, std=d_model**-0.5)  # T5's (Mesh TF) initialiser

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0, causal: bool = False) -> torch.Tensor:
        relative = relative_distances(q_len, k_len, offset, self.relative_attention_bias.device)  # (T, S)
        buckets = t5_bucket(relative, not causal, self.num_buckets, self.max_distance)
        return self.relative_attention_bias[buckets].permute(2, 0, 1)  # (T, S, H) -> (H, T, S)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Press et al.'s head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power of two;
    otherwise those of the nearest lower power of two plus every other slope of the next one."""

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(lower) + geometric(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(PositionalScheme):
    """Attention with linear biases (Press et al., 2022): score - slope_h * |query pos - key pos|.

    Symmetric in the encoder; in the decoder the future is masked, so the same formula is causal ALiBi.
    Queries sit at `offset + i`, so incremental decoding sees the same biases as a full forward pass.
    """

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # (H,)

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0, causal: bool = False) -> torch.Tensor:
        distance = relative_distances(q_len, k_len, offset, self.slopes.device).abs().float()  # (T, S)
        return -self.slopes[:, None, None] * distance  # (H, T, S)
