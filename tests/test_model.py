"""The model's defining properties: reference equivalences, causality, padding, caching, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.errors import ConfigError
from enhanced_tx.model import RMSNorm, RotaryEmbedding
from enhanced_tx.model.attention import SelfAttention
from enhanced_tx.model.norm import LayerNorm
from enhanced_tx.model.positional import NoPositions

from .conftest import make_model


def test_rmsnorm_matches_torch_reference():
    torch.manual_seed(0)
    ours, ref = RMSNorm(48, eps=1e-6), torch.nn.RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 48) * 4
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_rmsnorm_training_without_the_fused_aten_op_matches_torch_reference(monkeypatch):
    """torch < 2.8 lacks `_fused_rms_norm`: training takes F.rms_norm (the fused path: tests/test_fast_paths.py)."""
    from enhanced_tx.model import norm as norm_module

    monkeypatch.setattr(norm_module, "_HAS_FUSED_RMS_NORM", False)
    torch.manual_seed(0)
    ours, ref = RMSNorm(48, eps=1e-6), torch.nn.RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    x = (torch.randn(3, 5, 48) * 4).requires_grad_()
    grad = torch.randn(3, 5, 48)
    y = ours(x)
    assert type(y.grad_fn).__name__ != "_RMSNormFunctionBackward"
    got = torch.autograd.grad(y, (x, ours.weight), grad)
    want = torch.autograd.grad(ref(x), (x, ref.weight), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_layernorm_has_no_bias_and_matches_reference():
    torch.manual_seed(0)
    ours = LayerNorm(16)
    ref = torch.nn.LayerNorm(16, bias=False)
    x = torch.randn(4, 16)
    assert [n for n, _ in ours.named_parameters()] == ["weight"]
    torch.testing.assert_close(ours(x), ref(x))


def _naive_attention(q, k, v, mask=None, causal=False):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        t, s = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("case", ["plain", "key_mask", "causal"])
def test_self_attention_matches_naive_softmax_in_float64(case):
    torch.manual_seed(0)
    attn = SelfAttention(24, 3).double()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    mask = None
    if case == "key_mask":
        real = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
        mask = real[:, None, None, :]
    out = attn(x, NoPositions(24, 3, 16), key_mask=mask, causal=case == "causal")

    b, t, d = x.shape
    q, k, v = attn.qkv(x).view(b, t, 3, 3, 8).permute(2, 0, 3, 1, 4)
    y = _naive_attention(q, k, v, mask, causal=case == "causal")
    expected = attn.out(y.transpose(1, 2).reshape(b, t, d))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_rope_scores_depend_only_on_position_difference():
    torch.manual_seed(0)
    rope = RotaryEmbedding(d_model=16, n_heads=1, max_seq_len=64)
    q = torch.randn(1, 1, 1, 16)
    k = torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        qm, _ = rope.rotate(q, q, offset=m)
        kn, _ = rope.rotate(k, k, offset=n)
        return (qm * kn).sum()

    torch.testing.assert_close(score(3, 1), score(12, 10), rtol=0, atol=1e-5)
    torch.testing.assert_close(score(0, 5), score(20, 25), rtol=0, atol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)  # it does depend on the difference


def test_decoder_is_causal_for_every_positional_scheme(positional, attention):
    model = make_model(positional, attention=attention)
    src = torch.randint(0, 97, (2, 9))
    tgt = torch.randint(0, 97, (2, 8))
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(0, 97, (2, 3))
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_source_padding_does_not_change_logits(positional, attention):
    model = make_model(positional, attention=attention)
    src = torch.randint(1, 97, (1, 6))
    tgt = torch.randint(1, 97, (1, 5))
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    with torch.no_grad():
        plain = model(src, tgt)
        with_padding = model(padded, tgt, mask)
    torch.testing.assert_close(plain, with_padding, rtol=0, atol=1e-5)


def test_mixed_length_batch_equals_each_source_alone(positional, attention):
    model = make_model(positional, attention=attention)
    lengths = [9, 4, 6]
    sources = [torch.randint(1, 97, (n,)) for n in lengths]
    tgt = torch.randint(1, 97, (3, 5))
    src = torch.zeros(3, 9, dtype=torch.long)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for i, s in enumerate(sources):
        src[i, : len(s)] = s
        mask[i, : len(s)] = True
    with torch.no_grad():
        batched = model(src, tgt, mask)
        alone = torch.cat([model(s[None], tgt[i : i + 1]) for i, s in enumerate(sources)])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)


def test_cached_decoding_matches_full_forward(positional, attention, variant):
    norm, feedforward = variant
    model = make_model(positional, norm=norm, feedforward=feedforward, attention=attention)
    src = torch.randint(1, 97, (2, 7))
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    tgt = torch.randint(1, 97, (2, 10))
    with torch.no_grad():
        full = model(src, tgt, mask)
        cache = model.init_cache(model.encode(src, mask), mask, max_len=16)
        # a 3-token chunk first (exercises the offset mask), then one token per step
        steps = [model.decode_step(tgt[:, :3], cache)[0]]
        steps += [model.decode_step(tgt[:, t : t + 1], cache)[0] for t in range(3, 10)]
    assert cache.offset == 10
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("lineage", [False, True], ids=["copied", "lineage"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["stacked", "per-layer"])
@pytest.mark.parametrize("max_len", [8, 512])  # a buffer nearly full by the end, and one mostly unfilled
def test_cache_reorders_in_a_row_match_the_full_forward_of_each_rows_history(max_len, per_layer, lineage):
    """Reorders that shrink, repeat and permute rows (the CPU path writes each into the buffers the previous
    one replaced): every step's logits equal a full forward over the history each row has by then, with the
    self-attention cache stacked or one buffer per layer (the compiled decode step's), and with the rows copied
    or a lineage table reordered instead (same row count) and resolved into rows (another row count)."""
    model = make_model(max_seq_len=512)
    src = torch.randint(1, 97, (3, 5))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cache = model.init_cache(model.encode(src), None, max_len=max_len)
        history, source = torch.randint(1, 97, (3, 2), generator=generator), torch.arange(3)
        model.decode_step(history, cache)
        if per_layer:  # after a step: the filled prefix is copied over
            cache = cache.per_layer()
            assert isinstance(cache.self_k, list) and cache.max_len == max_len + 1  # one spare position
        if lineage:
            cache = cache.tracking_lineage()
        for index in ([2, 0, 0], [1, 2, 1], [2, 0], [1, 1], [1, 0], [0, 1]):
            index = torch.tensor(index)
            cache.reorder(index)
            new = torch.randint(1, 97, (len(index), 1), generator=generator)
            history, source = torch.cat([history[index], new], 1), source[index]
            logits, _ = model.decode_step(new, cache)
            full = model(src[source], history)
            torch.testing.assert_close(logits[:, -1], full[:, -1], rtol=0, atol=1e-5)
    assert cache.offset == 8
    if lineage:  # the last reorders kept the row count: only the table moved, and it points at other rows
        own_rows = torch.arange(2)[:, None].expand(2, 8)
        assert cache.lineage is not None and not torch.equal(cache.lineage[:, :8], own_rows)


@pytest.mark.parametrize("lineage", [False, True], ids=["copied", "lineage"])
@pytest.mark.parametrize("per_layer", [False, True], ids=["stacked", "per-layer"])
def test_beams_share_their_sources_cross_keys_until_a_reorder_mixes_sources(attention, per_layer, lineage):
    """Beam-style reorders (k rows per source, then reorders within each source) keep one copy of each source's
    cross keys/values, whose rows attend together; a reorder that mixes sources copies them out per row. Every
    step's logits equal a full forward over each row's history, with padded sources and every head layout."""
    model = make_model(attention=attention)
    src = torch.randint(1, 97, (2, 7))
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cache = model.init_cache(model.encode(src, mask), mask, max_len=8)
        cache = cache.per_layer() if per_layer else cache
        cache = cache.tracking_lineage() if lineage else cache
        history, source = torch.randint(1, 97, (2, 1), generator=generator), torch.arange(2)
        model.decode_step(history, cache)
        # (index, rows per source after it, tokens fed next): a 2-token chunk checks the queries' order
        steps = [
            ([0, 0, 0, 1, 1, 1], 3, 1),
            ([2, 0, 0, 4, 3, 5], 3, 2),
            ([1, 1, 2, 3, 5, 5], 3, 1),
            ([5, 0, 2, 4], 1, 1),
        ]
        for index, rows_per_source, width in steps:
            index = torch.tensor(index)
            cache.reorder(index)
            assert cache.rows_per_source == rows_per_source
            assert cache.cross_k.shape[1] == len(index) // rows_per_source
            new = torch.randint(1, 97, (len(index), width), generator=generator)
            history, source = torch.cat([history[index], new], 1), source[index]
            logits, _ = model.decode_step(new, cache)
            full = model(src[source], history, mask[source])
            torch.testing.assert_close(logits, full[:, -width:], rtol=0, atol=1e-5)


def test_cross_attention_rejects_query_rows_that_are_not_whole_groups_of_sources():
    model = make_model()
    memory = model.encode(torch.randint(1, 97, (2, 5)))
    kv = model.decoder_layers[0].cross_attn.project_memory(memory)
    with pytest.raises(ValueError, match="cross-attention over 2 sources got 3 query rows"):
        model.decoder_layers[0].cross_attn(torch.randn(3, 1, 32), kv)


def test_gradient_checkpointing_gives_the_same_gradients():
    src = torch.randint(1, 97, (2, 8))
    tgt = torch.randint(1, 97, (2, 6))
    grads = []
    for enabled in (False, True):
        model = make_model(dropout=0.0).train()
        model.set_gradient_checkpointing(enabled)
        F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=1e-6, msg=name)


def test_embeddings_are_tied_and_linears_have_no_bias():
    model = make_model()
    assert model.padded_vocab_size == 128 and model.vocab_size == 97
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.bias is None for m in linears)
    x = torch.randint(0, 97, (1, 3))
    with torch.no_grad():
        model.embed.weight[5].fill_(0.0)
        logits = model(x, x)
    assert torch.all(logits[..., 5] == 0)  # the head reads the same matrix as the embedding


def test_residual_projections_get_scaled_init():
    model = make_model(d_model=256, n_heads=4, n_encoder_layers=6, n_decoder_layers=6)
    plain = model.encoder_layers[0].attn.qkv.weight.std().item()
    residual = model.encoder_layers[0].attn.out.weight.std().item()
    assert plain == pytest.approx(0.02, rel=0.05)
    assert residual == pytest.approx(0.02 / math.sqrt(12), rel=0.05)


@pytest.mark.parametrize(
    "kwargs, keys",
    [
        (dict(d_model=30, n_heads=4), ["model.d_model=30", "model.n_heads=4"]),
        (dict(d_model=12, n_heads=4), ["positional=rope", "model.d_model=12"]),  # head dim 3 is odd
        (dict(n_encoder_layers=0), ["model.n_encoder_layers=0"]),
        (dict(dropout=1.5), ["model.dropout=1.5"]),
    ],
)
def test_impossible_configs_fail_at_build_with_the_keys_named(kwargs, keys):
    with pytest.raises(ConfigError) as info:
        make_model("rope", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for key in keys:
        assert key in message


def test_sequence_longer_than_the_position_table_is_a_clear_error():
    model = make_model("learned", max_seq_len=16)
    with pytest.raises(ConfigError, match="model.max_seq_len=16"):
        model(torch.randint(0, 97, (1, 17)), torch.randint(0, 97, (1, 4)))
    with pytest.raises(ConfigError, match="model.max_seq_len=16"):
        model.check_lengths(8, 20)
