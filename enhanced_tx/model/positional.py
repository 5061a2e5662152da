"""Positional schemes behind one small interface.

A scheme is built as `scheme(d_model=..., n_heads=..., max_seq_len=...)` by a Hydra `_partial_` factory
(one instance per stack). The model calls two hooks, and every scheme honours a position `offset` so that
incremental decoding sees the same positions as a full forward pass:

- `embed(x, offset)`: absolute schemes add their table to the token embeddings `x (B, T, D)`.
- `rotate(q, k, offset)`: relative schemes transform self-attention queries and keys `(B, H, T, hd)`.
- `attention_bias(q_len, k_len, offset, causal)`: bias schemes (`enhanced_tx.model.position_bias`: T5's
  buckets, ALiBi) return a float `(H, T, S)` added to the self-attention scores; the others return None,
  which keeps SDPA's flash kernels available.

Adding a scheme is one subclass here (or anywhere importable) plus one YAML file in `conf/positional/`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from enhanced_tx.errors import ConfigError


class PositionalScheme(nn.Module):
    """Identity on both hooks; subclasses override the one they need."""

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.max_seq_len = max_seq_len

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attention_bias(self, q_len: int, k_len: int, offset: int = 0, causal: bool = False) -> torch.Tensor | None:
        """Bias (H, T, S) on the scores of queries at positions offset .. offset+T-1 over keys 0 .. S-1."""
        return None


class NoPositions(PositionalScheme):
    """No positional signal at all (ablation baseline)."""


class _AbsoluteTable(PositionalScheme):
    """Adds rows `offset .. offset+T` of a (max_seq_len, D) table to the embeddings."""

    table: torch.Tensor

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)  # (B, T, D) + (T, D)


class SinusoidalPositions(_AbsoluteTable):
    """Fixed sin/cos table of Vaswani et al. (2017); not a parameter, not saved.

    The table is multiplied by `scale`, by default the token embeddings' init std (0.02): at amplitude 1
    the positions drown token identity after the pre-LN norm, and a small model stalls at the unigram
    loss on a copy task (measured: loss 3.2 after 200 steps unscaled, 0.65 scaled).
    """

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, scale: float = 0.02) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        position = torch.arange(max_seq_len, dtype=torch.float32)[:, None]
        inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_seq_len, d_model)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
        self.register_buffer("table", table * scale, persistent=False)


class LearnedPositions(_AbsoluteTable):
    """A learned (max_seq_len, D) table, initialised like the token embeddings."""

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.table = nn.Parameter(torch.empty(max_seq_len, d_model))
        nn.init.normal_(self.table, std=0.02)


class RotaryEmbedding(PositionalScheme):
    """Rotary embeddings (Su et al., 2021), half-split layout, on self-attention queries and keys.

    The score of a rotated query at position m and key at position n depends only on m - n.
    """

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, theta: float = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if self.head_dim % 2:
            raise ConfigError(
                f"positional=rope needs an even head dimension, but model.d_model={d_model} / "
                f"model.n_heads={n_heads} = {self.head_dim}; pick d_model and n_heads with an even ratio"
            )
        inv_freq = 1.0 / theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (L, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotate(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        t = q.shape[-2]
        cos = self.cos[offset : offset + t].to(q.dtype)  # (T, hd/2), broadcast over (B, H)
        sin = self.sin[offset : offset + t].to(q.dtype)
        if torch.compiler.is_compiling():  # plain functional ops: the compiler fuses them into one kernel
            return textbook_rotate(q, cos, sin), textbook_rotate(k, cos, sin)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            return _Rotate.apply(q, cos, sin), _Rotate.apply(k, cos, sin)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)  # inference: no autograd node to build


def textbook_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) in plain functional ops (what compilers fuse best)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) over the two halves of the last dim, written into one
    buffer (no concatenation), with the same products and sums, so the same bits, as the textbook formula."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, hd/2) each
    if x.dim() == 4 and x.stride(1) < x.stride(2):  # heads inside time (a view of a fused projection)
        b, h, t, d = x.shape
        out = x.new_empty(b, t, h, d).transpose(1, 2)  # keep that memory order: no transposing copy
    else:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).sub_(x2 * sin)
    torch.mul(x2, cos, out=out2).add_(x1 * sin)
    return out


class _Rotate(torch.autograd.Function):
    """Rotary rotation whose backward is the inverse rotation (angle -theta): it saves no activation and
    runs a handful of kernels instead of autograd's graph of eight elementwise ops."""

    @staticmethod
    def forward(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return _rotate(x, cos, sin)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        _, cos, sin = inputs
        ctx.save_for_backward(cos, sin)  # (T, hd/2) table slices, not activations

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, -sin), None, None
