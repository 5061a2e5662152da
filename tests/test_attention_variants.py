"""Attention variants (mha, gqa, mqa, qk_norm) and score-bias positions (t5_bias, alibi): reference
equivalences, the KV cache size, the bias as a function of distance only, and the error for impossible heads.

The model invariants (causality, source padding, mixed-length batches, cached decoding) run over every
attention x positional combination in tests/test_model.py through the `attention` and `positional` fixtures.
"""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from enhanced_tx.errors import ConfigError, one_line, unwrap
from enhanced_tx.model import ALiBi, AttentionSpec, T5RelativeBias
from enhanced_tx.model.attention import CrossAttention, SelfAttention
from enhanced_tx.model.position_bias import alibi_slopes, t5_bucket
from enhanced_tx.model.positional import NoPositions

from .conftest import compose_train, make_model


def _inputs():
    torch.manual_seed(1)
    src = torch.randint(1, 97, (2, 7))
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    return src, mask, torch.randint(1, 97, (2, 6))


def test_gqa_with_as_many_kv_heads_as_query_heads_equals_mha_exactly():
    src, mask, tgt = _inputs()
    mha = make_model("rope", seed=3)
    gqa = make_model("rope", seed=3, attention=AttentionSpec(n_kv_heads=4))
    assert mha.state_dict().keys() == gqa.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(mha(src, tgt, mask), gqa(src, tgt, mask))


@pytest.mark.parametrize("n_kv_heads", [2, 1])
@pytest.mark.parametrize("positional", ["rope", "alibi"])
def test_grouped_heads_equal_mha_with_each_kv_head_repeated_over_its_group(n_kv_heads, positional):
    """SDPA's enable_gqa path against the definition: query head h reads KV head h // (H / KV)."""
    src, mask, tgt = _inputs()
    grouped = make_model(positional, attention=AttentionSpec(n_kv_heads=n_kv_heads))
    mha = make_model(positional)
    hd, group = 8, 4 // n_kv_heads
    state = grouped.state_dict()
    for name, weight in list(state.items()):
        if name.endswith("attn.qkv.weight") and "cross" not in name:
            q, k, v = weight.split((32, n_kv_heads * hd, n_kv_heads * hd))
            state[name] = torch.cat(
                [q, *(w.view(n_kv_heads, hd, 32).repeat_interleave(group, 0).flatten(0, 1) for w in (k, v))]
            )
        elif name.endswith("cross_attn.kv.weight"):
            k, v = weight.chunk(2)
            state[name] = torch.cat(
                [w.view(n_kv_heads, hd, 32).repeat_interleave(group, 0).flatten(0, 1) for w in (k, v)]
            )
    mha.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(grouped(src, tgt, mask), mha(src, tgt, mask), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1])
def test_kv_cache_holds_n_kv_heads_only(n_kv_heads):
    model = make_model("rope", attention=AttentionSpec(n_kv_heads=n_kv_heads))
    src, mask, _ = _inputs()
    with torch.no_grad():
        cache = model.init_cache(model.encode(src, mask), mask, max_len=10)
    kv = n_kv_heads or 4
    assert cache.self_k.shape == (2, 2, kv, 10, 8) and cache.self_v.shape == cache.self_k.shape  # (L, B, KV, T, hd)
    assert cache.cross_k.shape == (2, 2, kv, 7, 8)
    assert model.decoder_layers[0].self_attn.qkv.weight.shape == ((4 + 2 * kv) * 8, 32)


@pytest.mark.parametrize("n_kv_heads", [3, 0])
def test_kv_heads_that_do_not_divide_the_heads_are_a_one_line_config_error(n_kv_heads):
    with pytest.raises(ConfigError) as error:
        make_model("rope", attention=AttentionSpec(n_kv_heads=n_kv_heads))
    message = str(error.value)
    assert "\n" not in message
    assert f"model.n_heads=4 is not a multiple of model.attention.n_kv_heads={n_kv_heads}" in message
    assert "1, 2, 4" in message  # the fix: the values that work


def test_composed_gqa_with_bad_kv_heads_fails_at_build(tmp_path):
    cfg = compose_train(tmp_path, "attention=gqa", "model.attention.n_kv_heads=3")
    with pytest.raises(Exception) as error:
        instantiate(cfg.model, vocab_size=300)
    assert isinstance(unwrap(error.value), ConfigError)  # what the entry points print, as one line
    assert one_line(error.value).startswith("model.n_heads=4 is not a multiple of model.attention.n_kv_heads=3;")


def _naive(q, k, v, bias=None, key_mask=None, causal=False):
    """Scores in float64 with K/V heads repeated over their groups, then the bias, masks, softmax."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    t, s = scores.shape[-2:]
    if causal:
        scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool).tril(s - t), float("-inf"))
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("scheme", [NoPositions, T5RelativeBias, ALiBi])
@pytest.mark.parametrize("case", ["key_mask", "causal"])
@pytest.mark.parametrize("spec", [AttentionSpec(), AttentionSpec(n_kv_heads=2, qk_norm=True)], ids=["mha", "gqa-qk"])
def test_self_attention_matches_naive_softmax_with_bias_and_groups(scheme, case, spec):
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, spec=spec).double()
    positions = scheme(32, 4, 16).double()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    key_mask = (
        torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)[:, None, None, :] if case == "key_mask" else None
    )
    out = attn(x, positions, key_mask=key_mask, causal=case == "causal")

    q, k, v = (
        attn.qkv(x)
        .view(2, 7, 4 + 2 * attn.n_kv_heads, 8)
        .transpose(1, 2)
        .split((4, attn.n_kv_heads, attn.n_kv_heads), 1)
    )
    if spec.qk_norm:  # RMSNorm over each head's dim, written out
        q = q / q.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * attn.q_norm.weight
        k = k / k.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * attn.k_norm.weight
    bias = positions.attention_bias(7, 7, 0, causal=case == "causal")
    y = _naive(q, k, v, bias, key_mask, causal=case == "causal")
    torch.testing.assert_close(out, attn.out(y.transpose(1, 2).reshape(2, 7, 32)), rtol=1e-10, atol=1e-10)


def test_qk_norm_makes_attention_invariant_to_the_scale_of_queries_and_keys():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    for qk_norm in (True, False):
        attn = SelfAttention(32, 4, spec=AttentionSpec(qk_norm=qk_norm)).double()
        cross = CrossAttention(32, 4, spec=AttentionSpec(qk_norm=qk_norm)).double()
        before = attn(x, NoPositions(32, 4, 8)), cross(x, cross.project_memory(x))
        with torch.no_grad():
            attn.qkv.weight[:64] *= 7.0  # queries and keys 7x larger, values unchanged
            cross.q.weight *= 7.0
            cross.kv.weight[:32] *= 7.0
        after = attn(x, NoPositions(32, 4, 8)), cross(x, cross.project_memory(x))
        for b, a in zip(before, after, strict=True):
            change = (b - a).abs().max().item()
            assert change < 1e-5 if qk_norm else change > 1e-3  # 1e-5: RMSNorm's eps is not scale-free


@pytest.mark.parametrize("scheme", [T5RelativeBias, ALiBi])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("offset", [0, 5])
def test_score_bias_depends_only_on_relative_distance(scheme, causal, offset):
    torch.manual_seed(0)
    positions = scheme(d_model=48, n_heads=6, max_seq_len=64)
    t, s = 4, offset + 4 + 20
    bias = positions.attention_bias(t, s, offset, causal=causal)  # (H, T, S)
    assert bias.shape == (6, t, s)
    by_distance: dict[int, torch.Tensor] = {}
    for i in range(t):
        for j in range(s):
            d = j - (offset + i)
            if causal and d > 0:
                continue  # future keys are masked, whatever their bias
            seen = by_distance.setdefault(d, bias[:, i, j])
            assert torch.equal(seen, bias[:, i, j]), (i, j)
    assert len({tuple(v.tolist()) for v in by_distance.values()}) > 3  # and it does vary with the distance


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_the_hugging_face_reference(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 301)[None, :]
    for num_buckets, max_distance in ((32, 128), (16, 64)):
        expected = T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
        assert torch.equal(t5_bucket(relative, bidirectional, num_buckets, max_distance), expected)


def test_t5_bias_is_one_table_per_stack_shared_by_its_layers():
    model = make_model("t5_bias", n_encoder_layers=3, n_decoder_layers=2)
    tables = [name for name, _ in model.named_parameters() if "relative_attention_bias" in name]
    assert tables == ["encoder_positional.relative_attention_bias", "decoder_positional.relative_attention_bias"]
    src, mask, tgt = _inputs()
    model(src, tgt, mask).sum().backward()
    assert all(model.get_parameter(name).grad.abs().sum() > 0 for name in tables)


def test_alibi_slopes_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 12 heads: the 8 slopes of 8 heads, then the odd-indexed ones of 16 heads (2^-0.5, 2^-1.5, ...)
    assert torch.allclose(alibi_slopes(12)[8:], torch.tensor([2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]))
