"""Attention variants side by side (mha, gqa, mqa as in conf/attention/): the KV cache each one allocates
and batch-8 greedy decoding throughput, same weights otherwise, timed interleaved in one process.

The cache holds self-attention keys/values for every generated position plus the cross-attention
keys/values of the source, for every decoder layer: grouped heads shrink both by n_heads / n_kv_heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from enhanced_tx.bench.generation import Runner, generator_for, measure_generation
from enhanced_tx.bench.peers import build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.table import Table, fmt, ratio
from enhanced_tx.model import AttentionSpec

# The shipped options (conf/attention/*.yaml): gqa's n_kv_heads=2 divides every size's head count.
VARIANTS = {"mha": AttentionSpec(), "gqa": AttentionSpec(n_kv_heads=2), "mqa": AttentionSpec(n_kv_heads=1)}
BATCH = 8
NEW_TOKENS = 32  # a short run: the cache size is exact, and decoding speed settles within a few dozen steps


@dataclass
class AttentionResult:
    size: str
    attention: str
    n_kv_heads: int
    batch: int
    dtype: str  # weights
    src_len: int
    new_tokens: int
    kv_cache_bytes: int  # self K/V for new_tokens positions + cross K/V of the source, all decoder layers
    tokens_per_s: float
    ms_per_step: float


@torch.no_grad()
def kv_cache_bytes(model: torch.nn.Module, batch: int, src_len: int, max_len: int) -> int:
    """Bytes of the decoder cache `model.init_cache` allocates for `batch` sources of `src_len` tokens."""
    weight = model.embed.weight
    memory = torch.zeros(batch, src_len, model.d_model, dtype=weight.dtype, device=weight.device)
    cache = model.init_cache(memory, None, max_len)
    return sum(t.numel() * t.element_size() for t in (cache.self_k, cache.self_v, cache.cross_k, cache.cross_v))


def measure_attention_variants(
    shape: Shape,
    dtype: str,
    src_len: int,
    repeats: int,
    device: torch.device,
    linear_backend: str = "auto",
    new_tokens: int = NEW_TOKENS,
) -> list[AttentionResult]:
    """Build the three variants with the same seed, time their greedy decoding interleaved (best of `repeats`)."""
    runners, models = [], {}
    for name, spec in VARIANTS.items():
        torch.manual_seed(0)
        contender = build_ours(shape, attention=spec, linear_backend=linear_backend)
        contender.model.to(device)
        models[name] = contender.model
        runners.append(Runner(name, dtype, generator_for(contender, dtype)))
    timed = measure_generation(shape.name, runners, BATCH, shape.vocab, src_len, new_tokens, repeats, device)
    return [
        AttentionResult(
            size=shape.name,
            attention=r.model,
            n_kv_heads=models[r.model].decoder_layers[0].self_attn.n_kv_heads,
            batch=BATCH,
            dtype=dtype,
            src_len=src_len,
            new_tokens=new_tokens,
            kv_cache_bytes=kv_cache_bytes(models[r.model], BATCH, src_len, new_tokens),
            tokens_per_s=r.tokens_per_s,
            ms_per_step=r.ms_per_step,
        )
        for r in timed
    ]


def attention_table(rows: list[AttentionResult]) -> Table:
    table = Table(
        "Attention variants: KV cache and greedy decoding",
        ["size", "attention", "KV heads", "batch", "weights", "KV cache MB", "vs mha", "tok/s", "ms/token", "vs mha"],
    )
    mha = {(r.size, r.dtype): r for r in rows if r.attention == "mha"}
    for r in rows:
        ref = mha.get((r.size, r.dtype))
        table.add(
            r.size,
            r.attention,
            r.n_kv_heads,
            r.batch,
            r.dtype,
            fmt(r.kv_cache_bytes / 2**20, 1),
            ratio(r.kv_cache_bytes, ref.kv_cache_bytes if ref else None),
            r.tokens_per_s,
            fmt(r.ms_per_step, 1),
            ratio(r.tokens_per_s, ref.tokens_per_s if ref else None),
        )
    if rows:
        table.notes.append(
            f"{rows[0].new_tokens} new tokens from a {rows[0].src_len}-token source; cache = self K/V of the new "
            "positions + cross K/V of the source over all decoder layers; tok/s = batch x new tokens / best call."
        )
    return table
