"""Beam lineage (`model/lineage.py`): attention through a table of cache rows equals SDPA over the rows gathered.

The end-to-end check, compiled beam search finding the eager beams for every positional scheme and head layout,
is in tests/test_compiled_step.py (slow: it compiles)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.model.lineage import identity_lineage, one_query_attention, through_lineage

B, H, HD, MAX_LEN, S = 5, 4, 8, 12, 7


def _inputs(kv: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, 1, HD, generator=generator)
    k_cache = torch.randn(B, kv, MAX_LEN, HD, generator=generator)
    v_cache = torch.randn(B, kv, MAX_LEN, HD, generator=generator)
    lineage = torch.randint(0, B, (B, S), generator=generator)  # any row may hold any position
    return q, k_cache, v_cache, lineage


def test_through_lineage_reads_each_position_from_its_row():
    _, k_cache, _, lineage = _inputs(kv=2)
    gathered = through_lineage(k_cache, lineage)
    for r in range(B):
        for t in range(S):
            assert torch.equal(gathered[r, :, t], k_cache[lineage[r, t], :, t])


def test_the_identity_lineage_reads_the_rows_as_they_are():
    _, k_cache, _, _ = _inputs(kv=4)
    assert torch.equal(through_lineage(k_cache, identity_lineage(B, S, k_cache.device)), k_cache[:, :, :S])


@pytest.mark.parametrize("kv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("mask", ["none", "key-mask", "bias", "batch-bias"])
def test_one_query_attention_equals_sdpa_over_the_gathered_rows(kv, mask):
    q, k_cache, v_cache, lineage = _inputs(kv)
    generator = torch.Generator().manual_seed(1)
    attn_mask = {
        "none": None,
        "key-mask": torch.rand(B, 1, 1, S, generator=generator) > 0.3,  # bool, True = attend
        "bias": torch.randn(H, 1, S, generator=generator),  # a position bias (ALiBi, T5)
        "batch-bias": torch.randn(B, H, 1, S, generator=generator),
    }[mask]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask[:, :, :, 0] = True  # every row attends somewhere
    keys, values = through_lineage(k_cache, lineage), through_lineage(v_cache, lineage)
    expected = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, enable_gqa=kv != H)
    got = one_query_attention(q, k_cache, v_cache, lineage, attn_mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_one_query_attention_returns_bf16_for_bf16_and_matches_fp32_on_the_same_values():
    q, k_cache, v_cache, lineage = (t.bfloat16() if t.is_floating_point() else t for t in _inputs(kv=2))
    got = one_query_attention(q, k_cache, v_cache, lineage, None)
    assert got.dtype == torch.bfloat16
    exact = one_query_attention(q.float(), k_cache.float(), v_cache.float(), lineage, None)  # the same values
    torch.testing.assert_close(got.float(), exact, rtol=2**-7, atol=2**-9)  # bf16 rounding of the result only
