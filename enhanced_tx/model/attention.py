"""Multi-head attention through `F.scaled_dot_product_attention` (fused kernels, no materialised masks).

Shapes: B batch, T query length, S key length, H heads, hd head dim, D = H * hd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from enhanced_tx.model.linear import Linear
from enhanced_tx.model.positional import PositionalScheme


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, except for training in bf16/fp16 on a CPU: there PyTorch's CPU flash
    kernel is about 1.5x slower (forward + backward) than in fp32, so q, k, v are upcast and the result cast
    back (more accurate too). GPUs, fp32 and inference (measured neutral) take the plain call."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and q.requires_grad:
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
            )
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)  # (B, H, T, hd)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(b, t, h * hd)  # (B, T, D)


class SelfAttention(nn.Module):
    """Self-attention with one fused QKV projection; optional causal masking and a KV cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = Linear(d_model, 3 * d_model, bias=False)
        self.out = Linear(d_model, d_model, bias=False)
        self.out.is_residual_projection = True

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D)
        positional: PositionalScheme,
        *,
        key_mask: torch.Tensor | None = None,  # (B, 1, 1, T) bool, True = attend
        causal: bool = False,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,  # (B, H, max_len, hd) each, written in place
        offset: int = 0,
    ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # (B,H,T,hd)
        q, k = positional.rotate(q, k, offset)
        attn_mask = key_mask
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, offset : offset + t] = k
            v_cache[:, :, offset : offset + t] = v
            k, v = k_cache[:, :, : offset + t], v_cache[:, :, : offset + t]  # (B, H, offset+T, hd)
            if causal and t > 1:
                # A chunk after a prefix: query i sees keys up to offset + i. Single-token steps need no mask.
                attn_mask = torch.ones(t, offset + t, dtype=torch.bool, device=x.device).tril(offset)
            causal = False
        y = attention(q, k, v, attn_mask=attn_mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        return self.out(_merge_heads(y))


class CrossAttention(nn.Module):
    """Decoder-to-encoder attention: query projection plus one fused KV projection of the memory."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = Linear(d_model, d_model, bias=False)
        self.kv = Linear(d_model, 2 * d_model, bias=False)
        self.out = Linear(d_model, d_model, bias=False)
        self.out.is_residual_projection = True

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the encoder output, (B, H, S, hd) each; computed once per source."""
        b, s, d = memory.shape
        k, v = self.kv(memory).view(b, s, 2, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D)
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None = None,  # (B, 1, 1, S) bool
    ) -> torch.Tensor:
        q = _split_heads(self.q(x), self.n_heads)  # (B, H, T, hd)
        k, v = memory_kv
        y = attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(_merge_heads(y))
