"""Pre-LN Transformer blocks: every sublayer is `x + f(norm(x))`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from enhanced_tx.model.attention import AttentionSpec, CrossAttention, SelfAttention
from enhanced_tx.model.positional import PositionalScheme

NormFactory = Callable[[int], nn.Module]
FeedForwardFactory = Callable[..., nn.Module]


class EncoderBlock(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        hidden: int,
        dropout: float,
        norm: NormFactory,
        feedforward: FeedForwardFactory,
        attention: AttentionSpec | None = None,
    ) -> None:
        super().__init__()
        self.attn_norm = norm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout, attention)
        self.ffn_norm = norm(d_model)
        self.ffn = feedforward(d_model=d_model, hidden=hidden, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positional: PositionalScheme, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), positional, key_mask=key_mask))
        return x + self.ffn(self.ffn_norm(x))


class DecoderBlock(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        hidden: int,
        dropout: float,
        norm: NormFactory,
        feedforward: FeedForwardFactory,
        attention: AttentionSpec | None = None,
    ) -> None:
        super().__init__()
        self.self_attn_norm = norm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads, dropout, attention)
        self.cross_attn_norm = norm(d_model)
        self.cross_attn = CrossAttention(d_model, n_heads, dropout, attention)
        self.ffn_norm = norm(d_model)
        self.ffn = feedforward(d_model=d_model, hidden=hidden, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        positional: PositionalScheme,
        memory_mask: torch.Tensor | None,
        memory: torch.Tensor | None = None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Pass `memory` (training: K/V projected here, inside any checkpointed region) or the cached
        `memory_kv` (incremental decoding: projected once per source)."""
        if memory_kv is None:
            memory_kv = self.cross_attn.project_memory(memory)
        h = self.self_attn(self.self_attn_norm(x), positional, causal=True, cache=cache, offset=offset)
        x = x + self.dropout(h)
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory_kv, memory_mask))
        return x + self.ffn(self.ffn_norm(x))
