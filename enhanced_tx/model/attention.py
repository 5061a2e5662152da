"""Multi-head, grouped-query and multi-query attention through `F.scaled_dot_product_attention`.

Shapes: B batch, T query length, S key length, H query heads, KV key/value heads (H = KV x group size),
hd head dim, D = H * hd. Grouped heads reach SDPA as they are (`enable_gqa`): no repeated K/V is
materialised, and the KV cache holds KV heads only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from enhanced_tx.errors import ConfigError
from enhanced_tx.model.lineage import one_query_attention, through_lineage
from enhanced_tx.model.linear import Linear
from enhanced_tx.model.norm import RMSNorm
from enhanced_tx.model.packing import Packing
from enhanced_tx.model.positional import PositionalScheme


class AttentionSpec:
    """How the heads are laid out (`conf/attention/`: mha, gqa, mqa).

    n_kv_heads: key/value heads shared by groups of query heads; None = one per query head (multi-head).
    qk_norm: RMSNorm of queries and keys per head before the product (OLMo 2, modded-nanogpt), which
        bounds the attention logits.

    A plain class, not a dataclass: Hydra turns a dataclass passed to `instantiate` into a config node.
    """

    def __init__(self, n_kv_heads: int | None = None, qk_norm: bool = False) -> None:
        self.n_kv_heads = n_kv_heads
        self.qk_norm = qk_norm

    def __repr__(self) -> str:
        return f"AttentionSpec(n_kv_heads={self.n_kv_heads}, qk_norm={self.qk_norm})"

    def kv_heads(self, n_heads: int) -> int:
        """The number of key/value heads for `n_heads` query heads; a one-line ConfigError if they do not divide."""
        kv = n_heads if self.n_kv_heads is None else self.n_kv_heads
        if kv < 1 or n_heads % kv:
            divisors = ", ".join(str(i) for i in range(1, n_heads + 1) if n_heads % i == 0)
            raise ConfigError(
                f"model.n_heads={n_heads} is not a multiple of model.attention.n_kv_heads={kv}; "
                f"set model.attention.n_kv_heads to one of {divisors}"
            )
        return kv


def attention(
    q: torch.Tensor,  # (B, H, T, hd)
    k: torch.Tensor,  # (B, KV, S, hd)
    v: torch.Tensor,  # (B, KV, S, hd)
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """`F.scaled_dot_product_attention` (grouped heads when KV < H), except for training in bf16/fp16 on a
    CPU: there PyTorch's CPU flash kernel is about 1.5x slower (forward + backward) than in fp32, so q, k, v
    are upcast and the result cast back (more accurate too). GPUs, fp32 and inference (measured neutral) take
    the plain call."""
    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and q.requires_grad:
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.float()
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **gqa
            )
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **gqa)


def scores_mask(
    key_mask: torch.Tensor | None,  # (B, 1, 1, S) bool, True = attend
    bias: torch.Tensor | None,  # (H, T, S) float, added to the scores
    causal: bool,
    t: int,
    s: int,
    device: torch.device,
) -> tuple[torch.Tensor | None, bool]:
    """(attn_mask, is_causal) for SDPA. Without a bias, causality stays `is_causal` (flash kernels apply) or
    a bool mask; a bias becomes the float mask, with masked positions at -inf."""
    allowed = None  # (T, S) bool: query i, at position s - t + i, sees keys up to s - t + i
    if causal and t > 1:  # a single new token sees every cached key: nothing to mask
        if bias is None and key_mask is None and t == s:
            return None, True
        allowed = torch.ones(t, s, dtype=torch.bool, device=device).tril(s - t)
    if bias is None:
        if allowed is None or key_mask is None:
            return (key_mask if allowed is None else allowed), False
        return key_mask & allowed, False
    if allowed is not None:
        bias = bias.masked_fill(~allowed, float("-inf"))
    if key_mask is not None:
        bias = bias.masked_fill(~key_mask, float("-inf"))  # (B, H, T, S)
    return bias, False


class SelfAttention(nn.Module):
    """Self-attention with one fused QKV projection; optional causal masking, position bias and a KV cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, spec: AttentionSpec | None = None) -> None:
        super().__init__()
        spec = spec or AttentionSpec()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, spec.kv_heads(n_heads), d_model // n_heads
        self.dropout = dropout
        # Output rows: H query heads, then KV key heads, then KV value heads (for H = KV: q | k | v as before).
        self.qkv = Linear(d_model, (n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False)
        self.out = Linear(d_model, d_model, bias=False)
        self.out.is_residual_projection = True
        # QK-norm: RMSNorm over each head's dim (one learned gain per head dim, shared by the heads).
        self.q_norm = RMSNorm(self.head_dim) if spec.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if spec.qk_norm else None

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D), or (N, D) real tokens with `packing`
        positional: PositionalScheme,
        *,
        key_mask: torch.Tensor | None = None,  # (B, 1, 1, T) bool, True = attend
        causal: bool = False,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,  # (B, KV, max_len, hd) each, written in place
        offset: int = 0,
        packing: Packing | None = None,
        lineage: torch.Tensor | None = None,  # (B, max_len): the cache row of each position (`model/lineage.py`)
    ) -> torch.Tensor:
        h, kv = self.n_heads, self.n_kv_heads
        qkv = _padded(self.qkv(x), packing)
        b, t, _ = qkv.shape
        qkv = qkv.view(b, t, h + 2 * kv, self.head_dim).transpose(1, 2)  # (B, H+2KV, T, hd), a view
        q, k, v = qkv.split((h, kv, kv), dim=1)  # (B, H, T, hd), (B, KV, T, hd) x 2
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = positional.rotate(q, k, offset)
        if _value_alone(qkv, q, k, cache):
            v = v.contiguous()
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, offset : offset + t] = k
            v_cache[:, :, offset : offset + t] = v
            k, v = k_cache[:, :, : offset + t], v_cache[:, :, : offset + t]  # (B, KV, offset+T, hd)
        s = k.shape[2]
        bias = positional.attention_bias(t, s, offset, causal=causal)  # (H, T, S) or None
        if bias is not None:
            bias = bias.to(q.dtype)
        attn_mask, is_causal = scores_mask(key_mask, bias, causal, t, s, x.device)
        if lineage is not None and t == 1 and torch.compiler.is_compiling():  # compiled: read through the table
            y = one_query_attention(q, k_cache, v_cache, lineage[:, :s], attn_mask)
        else:
            if lineage is not None:
                k, v = through_lineage(k_cache, lineage[:, :s]), through_lineage(v_cache, lineage[:, :s])
            y = attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(_merge_heads(y, packing))


class CrossAttention(nn.Module):
    """Decoder-to-encoder attention: query projection plus one fused KV projection of the memory."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, spec: AttentionSpec | None = None) -> None:
        super().__init__()
        spec = spec or AttentionSpec()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, spec.kv_heads(n_heads), d_model // n_heads
        self.dropout = dropout
        self.q = Linear(d_model, d_model, bias=False)
        self.kv = Linear(d_model, 2 * self.n_kv_heads * self.head_dim, bias=False)
        self.out = Linear(d_model, d_model, bias=False)
        self.out.is_residual_projection = True
        # QK-norm: RMSNorm over each head's dim (one learned gain per head dim, shared by the heads).
        self.q_norm = RMSNorm(self.head_dim) if spec.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if spec.qk_norm else None

    def project_memory(self, memory: torch.Tensor, packing: Packing | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the encoder output (B, S, D), or of its real tokens (N, D) with `packing`:
        (B, KV, S, hd) each; computed once per source."""
        kv = _padded(self.kv(memory), packing)
        b, s, _ = kv.shape
        kv = kv.view(b, s, 2 * self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, 2KV, S, hd)
        k, v = kv.split((self.n_kv_heads, self.n_kv_heads), dim=1)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k, v

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D), or (N, D) real tokens with `packing`
        memory_kv: tuple[torch.Tensor, torch.Tensor],  # (B / g, KV, S, hd) each: g rows share one source
        key_mask: torch.Tensor | None = None,  # (B / g, 1, 1, S) bool
        packing: Packing | None = None,
    ) -> torch.Tensor:
        q = _padded(self.q(x), packing)
        b, t, _ = q.shape
        k, v = memory_kv
        n = k.shape[0]
        if b % n or (b != n and packing is not None):
            raise ValueError(f"cross-attention over {n} sources got {b} query rows, not a multiple of them")
        # The g = b / n consecutive rows of one source (beams) attend as one row of g * t queries: the same
        # products per query, and the source's keys/values are read once, not once per beam.
        q = q.view(n, (b // n) * t, self.n_heads, self.head_dim).transpose(1, 2)  # (n, H, g*T, hd)
        if self.q_norm is not None:
            q = self.q_norm(q)
        y = attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        merged = _merge_heads(y, packing)  # (n, g*T, D), or (N, D) with `packing`
        return self.out(merged if b == n else merged.view(b, t, -1))


def _value_alone(qkv: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cache: object) -> bool:
    """Whether v should be copied out of the fused projection: in training, when q and k are new tensors
    (rotated, normed), a v viewing qkv would keep all of qkv for the backward. Eager only (the compiler plans
    what compiled blocks keep)."""
    if cache is not None or not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    base = qkv.untyped_storage().data_ptr()
    return all(t.untyped_storage().data_ptr() != base for t in (q, k))


def _padded(projected: torch.Tensor, packing: Packing | None) -> torch.Tensor:
    """A projection of packed tokens (N, F) laid out as the padded batch (B, T, F); padded input: as it is."""
    return projected if packing is None else packing.unpack(projected)


def _merge_heads(x: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
    """(B, H, T, hd) -> (B, T, D), or (N, D) at the real positions with `packing`."""
    b, h, t, hd = x.shape
    merged = x.transpose(1, 2).reshape(b, t, h * hd)
    return merged if packing is None else packing.pack(merged)
