"""The recipe options of the model (norm placement, embedding norm and scale, init) and their configs."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from enhanced_tx.errors import ConfigError
from enhanced_tx.model import LayerNorm, RMSNorm
from enhanced_tx.model.architecture import architecture_mismatch, architecture_of
from enhanced_tx.model.blocks import EncoderBlock, PostNorm, PreNorm

from .conftest import compose_train, make_model


def _branch_inputs(block: EncoderBlock, x: torch.Tensor) -> list[torch.Tensor]:
    """What the attention and the feed-forward sublayers receive (forward pre-hooks)."""
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for m in (block.attn, block.ffn)]
    block(x, make_model().encoder_positional, None)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("residual", [PreNorm(), PostNorm()], ids=repr)
def test_block_applies_its_norm_where_the_residual_choice_says(residual):
    torch.manual_seed(0)
    from functools import partial

    from enhanced_tx.model import GeluMLP

    block = EncoderBlock(32, 4, 64, 0.0, partial(LayerNorm), partial(GeluMLP), residual=residual).eval()
    x = torch.randn(2, 5, 32) * 3
    with torch.no_grad():
        for norm in (block.attn_norm, block.ffn_norm):
            norm.weight.uniform_(0.5, 1.5)
        out = block(x, make_model().encoder_positional, None)
        attn_in, ffn_in = _branch_inputs(block, x)
        positional = make_model().encoder_positional
        if isinstance(residual, PreNorm):
            torch.testing.assert_close(attn_in, block.attn_norm(x))
            h = x + block.attn(block.attn_norm(x), positional)
            want = h + block.ffn(block.ffn_norm(h))
        else:
            torch.testing.assert_close(attn_in, x)  # the sublayer sees the stream itself
            h = block.attn_norm(x + block.attn(x, positional))
            want = block.ffn_norm(h + block.ffn(h))
            torch.testing.assert_close(ffn_in, h)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("positional", ["rope", "learned"])
@pytest.mark.parametrize("residual", [PreNorm(), PostNorm()], ids=repr)
def test_cached_decoding_matches_full_forward_for_every_recipe_option(residual, positional):
    model = make_model(
        positional, norm=LayerNorm, residual=residual, embed_norm=True, embed_scale=4.0, memory_sink=True
    )
    with torch.no_grad():
        model.memory_sink.normal_()  # a trained sink, not the zero it starts at
    src = torch.randint(1, 97, (2, 7))
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    tgt = torch.randint(1, 97, (2, 9))
    with torch.no_grad():
        full = model(src, tgt, mask)
        cache = model.init_cache(model.encode(src, mask), mask, max_len=12)
        steps = [model.decode_step(tgt[:, :3], cache)[0]]
        steps += [model.decode_step(tgt[:, t : t + 1], cache)[0] for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)


def test_post_norm_has_no_final_norms_and_normalises_its_embeddings_unless_told_not_to():
    pre, post = make_model(), make_model(residual=PostNorm())  # model.embed_norm=auto
    pre_names = {n for n, _ in pre.named_parameters()}
    final = {"encoder_norm.weight", "decoder_norm.weight"}
    embed_norms = {"encoder_embed_norm.weight", "decoder_embed_norm.weight"}
    assert final <= pre_names
    assert not any("embed_norm" in n for n in pre_names)  # weights files of earlier runs still load
    assert {n for n, _ in post.named_parameters()} == (pre_names - final) | embed_norms
    bare = make_model(residual=PostNorm(), embed_norm=False)
    assert {n for n, _ in bare.named_parameters()} == pre_names - final
    with_norm = {n for n, _ in make_model(embed_norm=True).named_parameters()}
    assert with_norm - pre_names == embed_norms
    with pytest.raises(ConfigError, match="model.embed_norm='yes' must be true, false or auto"):
        make_model(embed_norm="yes")


def test_weights_files_record_the_norm_placement_and_refuse_the_other():
    pre, post = make_model(), make_model(residual=PostNorm())
    assert architecture_of(pre)["residual"] == "PreNorm"
    assert architecture_of(post)["norm"] == "RMSNorm"  # read from the blocks: post-norm stacks end with none
    assert "residual=PreNorm in the file, PostNorm in the model" in architecture_mismatch(architecture_of(pre), post)


def test_embedding_scale_and_norm_shape_what_the_first_block_reads():
    model = make_model("none", norm=RMSNorm, embed_scale=16.0, embed_norm=True)
    tokens = torch.randint(4, 97, (2, 6))
    with torch.no_grad():
        got = model._embed(tokens, model.encoder_positional, model.encoder_embed_norm, 0)
        scaled = model.embed.weight[tokens] * 16.0
    torch.testing.assert_close(got, model.encoder_embed_norm(scaled))
    rms = got.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=1e-3)  # normalised: unit RMS


@pytest.mark.parametrize("scale_residual", [True, False])
def test_init_std_and_residual_scaling(scale_residual):
    model = make_model(d_model=256, n_encoder_layers=4, init_std=0.05, scale_residual_init=scale_residual)
    plain = model.encoder_layers[0].attn.qkv.weight.std().item()
    residual = model.encoder_layers[0].ffn.down.weight.std().item()
    assert plain == pytest.approx(0.05, rel=0.05)
    assert model.embed.weight.std().item() == pytest.approx(0.05, rel=0.05)
    assert residual == pytest.approx(0.05 / math.sqrt(8) if scale_residual else 0.05, rel=0.05)


@pytest.mark.parametrize(("residual", "scaled"), [(None, True), (PostNorm(), False)], ids=["pre_norm", "post_norm"])
def test_residual_scaling_auto_follows_the_norm_placement(residual, scaled):
    """auto (the default): GPT-2's scaling in pre-norm stacks; none in post-norm ones, where the norm after
    each sum bounds the stream (BART's init)."""
    model = make_model(d_model=256, n_encoder_layers=4, init_std=0.05, residual=residual)
    residual_std = model.encoder_layers[0].ffn.down.weight.std().item()
    assert residual_std == pytest.approx(0.05 / math.sqrt(8) if scaled else 0.05, rel=0.05)
    with pytest.raises(ConfigError, match="model.scale_residual_init='no' must be true, false or auto"):
        make_model(scale_residual_init="no")


@pytest.mark.parametrize("choice, cls", [("pre_norm", PreNorm), ("post_norm", PostNorm)])
def test_residual_config_group_builds_the_class(tmp_path, choice, cls):
    cfg = compose_train(tmp_path, f"residual={choice}", "model.d_model=32", "model.n_heads=4")
    model = instantiate(cfg.model, vocab_size=50)
    assert all(type(block.residual) is cls for block in [*model.encoder_layers, *model.decoder_layers])


def test_memory_sink_is_one_more_attendable_slot_and_nothing_else():
    model = make_model(memory_sink=True)
    plain = make_model()
    assert {n for n, _ in model.named_parameters()} - {n for n, _ in plain.named_parameters()} == {"memory_sink"}
    src, tgt = torch.randint(1, 97, (2, 6)), torch.randint(1, 97, (2, 4))
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    with torch.no_grad():
        assert model.encode(src, mask).shape == (2, 6, 32)  # callers still see one memory row per source token
        cache = model.init_cache(model.encode(src, mask), mask, max_len=4)
        assert cache.cross_k.shape[3] == 7 and cache.cross_mask[:, 0, 0].tolist() == [
            [True] * 7,
            [True] * 4 + [False] * 3,
        ]
        model.memory_sink.normal_()
        memory = model.encode(src, mask)
        with_sink = model.decode(tgt, memory, mask)
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "memory_sink"})
        by_hand = plain.decode(
            tgt,
            torch.cat([model.memory_sink.expand(2, 1, 32), memory], dim=1),
            torch.cat([torch.ones(2, 1, dtype=torch.bool), mask], dim=1),
        )
    torch.testing.assert_close(with_sink, by_hand, rtol=0, atol=1e-6)


def test_pairs_data_selects_post_norm_text_keeps_pre_norm_and_the_command_line_wins(tmp_path):
    def residual(*overrides: str) -> str:
        return compose_train(tmp_path, *overrides).model.residual._target_.rsplit(".", 1)[-1]

    assert residual() == "PreNorm"  # the built-in corpus (make train)
    assert residual("data=pairs", "data.path=x.jsonl") == "PostNorm"
    assert residual("data=pairs", "data.path=x.jsonl", "residual=pre_norm") == "PreNorm"
    assert residual("data=text", "data.path=x.txt", "residual=post_norm") == "PostNorm"
    evaluation = compose_train(tmp_path, "run=x", "data.path=x.jsonl", config_name="eval")  # pairs composes in eval
    assert evaluation.data._target_.endswith("PairsData")


def test_pairs_data_selects_adamw_at_1_5e_3_and_the_command_line_wins(tmp_path):
    def lr(*overrides: str) -> float:
        return compose_train(tmp_path, *overrides).optimizer.lr

    assert lr() == 1e-3  # the built-in corpus (make train)
    assert lr("data=pairs", "data.path=x.jsonl") == 1.5e-3
    assert lr("data=pairs", "data.path=x.jsonl", "optimizer=adamw") == 1e-3
    assert lr("data=pairs", "data.path=x.jsonl", "optimizer.lr=3e-4") == 3e-4
    pairs = compose_train(tmp_path, "data=pairs", "data.path=x.jsonl").optimizer
    assert pairs.betas == [0.9, 0.98] and pairs.weight_decay == 0.1  # only the rate differs from adamw
