"""Transformer blocks. Where each sublayer's norm sits is a `Residual` choice (conf/residual/):
pre-norm `x + f(norm(x))` (the default) or post-norm `norm(x + f(x))` (the original Transformer, BART)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from enhanced_tx.model.attention import AttentionSpec, CrossAttention, SelfAttention
from enhanced_tx.model.packing import Packing
from enhanced_tx.model.positional import PositionalScheme
from enhanced_tx.model.recompute import recomputable

NormFactory = Callable[[int], nn.Module]
FeedForwardFactory = Callable[..., nn.Module]
Branch = Callable[[torch.Tensor], torch.Tensor]


class Residual:
    """How a sublayer `branch` joins the residual stream `x` through its `norm`. Stateless: the norms are
    the blocks' own modules, so the choice changes no parameter name."""

    final_norm: bool  # whether each stack ends with a norm (pre-norm streams are never normalised otherwise)
    embed_norm: bool  # what model.embed_norm=auto means: a norm on the embeddings entering each stack
    scale_residual_init: bool  # what model.scale_residual_init=auto means: branch outputs start at std/sqrt(2L)

    def __call__(self, x: torch.Tensor, norm: nn.Module, branch: Branch) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PreNorm(Residual):
    """`x + f(norm(x))`: an identity path from input to output; stable at any depth; needs a final norm."""

    final_norm = True
    embed_norm = False  # the first block normalises its input itself
    scale_residual_init = True  # GPT-2: the stream's variance grows with every branch added to it

    def __call__(self, x: torch.Tensor, norm: nn.Module, branch: Branch) -> torch.Tensor:
        return x + branch(normalised(norm, x))


class PostNorm(Residual):
    """`norm(x + f(x))` (Vaswani et al., 2017; BART): every block's output is normalised, so no final
    norm. Learns faster per step in shallow stacks; deep ones need warmup to train at all (Xiong et al., 2020)."""

    final_norm = False
    embed_norm = True  # BART's layernorm_embedding: else the first residual stream is the raw embedding
    # The norm after each sum already bounds the stream; shrinking the branches only makes each block start
    # nearer the identity: val/loss 2.68 vs 2.84 at step 1000 of the quality bench without the scaling
    scale_residual_init = False

    def __call__(self, x: torch.Tensor, norm: nn.Module, branch: Branch) -> torch.Tensor:
        return normalised(norm, x + branch(x))


def normalised(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)`, recomputed from `x` (which the norm's backward keeps) where a matmul would store it."""
    y = norm(x)
    return y if y is x else recomputable(y, norm, x)


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
        residual: Residual | None = None,
    ) -> None:
        super().__init__()
        self.residual = residual or PreNorm()
        self.attn_norm = norm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout, attention)
        self.ffn_norm = norm(d_model)
        self.ffn = feedforward(d_model=d_model, hidden=hidden, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        positional: PositionalScheme,
        key_mask: torch.Tensor | None,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        """x (B, S, D), or its real tokens (N, D) with `packing` (enhanced_tx.model.packing)."""
        x = self.residual(
            x, self.attn_norm, lambda h: self.dropout(self.attn(h, positional, key_mask=key_mask, packing=packing))
        )
        return self.residual(x, self.ffn_norm, self.ffn)


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
        residual: Residual | None = None,
    ) -> None:
        super().__init__()
        self.residual = residual or PreNorm()
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
        packing: Packing | None = None,
        memory_packing: Packing | None = None,
        lineage: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pass `memory` (training: K/V projected here, inside any checkpointed region) or the cached
        `memory_kv` (incremental decoding: projected once per source). With `packing`, x holds the target's
        real tokens (N, D); with `memory_packing`, memory the source's."""
        if memory_kv is None:
            memory_kv = self.cross_attn.project_memory(memory, memory_packing)
        x = self.residual(
            x,
            self.self_attn_norm,
            lambda h: self.dropout(
                self.self_attn(h, positional, causal=True, cache=cache, offset=offset, packing=packing, lineage=lineage)
            ),
        )
        x = self.residual(
            x, self.cross_attn_norm, lambda h: self.dropout(self.cross_attn(h, memory_kv, memory_mask, packing))
        )
        return self.residual(x, self.ffn_norm, self.ffn)
