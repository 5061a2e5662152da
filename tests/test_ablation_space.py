"""Every option composes with every other: the full product size x norm x positional x feed-forward x
attention (x qk_norm) builds, with the head layout and parameter count each choice implies.

Hydra composes each group option in tests/test_config.py (package headers, landing under `model.`); here
each shipped group file and size file is instantiated once, as Hydra's recursive instantiate does, and
the 576 models of the product are built from them on the meta device (shapes only; initialisers skipped,
there are no values) with one encoder and one decoder layer, so the test stays fast: depth interacts with
no option, while width and head count (head-dim parity for rope, n_kv_heads dividing n_heads, ALiBi's
slopes for 12 and 20 heads) do. Forward passes of every attention x positional pair at tiny width are
the invariant tests in test_model.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from enhanced_tx.model import AttentionSpec

from .conftest import CONF_DIR

GROUPS = ("norm", "positional", "feedforward", "attention")


def _options(group: str) -> dict[str, dict]:
    return {path.stem: OmegaConf.load(path) for path in sorted((Path(CONF_DIR) / group).glob("*.yaml"))}


OPTIONS = {group: _options(group) for group in GROUPS}


def _qkv_width(n_heads: int, n_kv_heads: int, head_dim: int) -> int:
    return (n_heads + 2 * n_kv_heads) * head_dim


@pytest.mark.parametrize("size", ["tiny", "small", "medium", "large"])
def test_full_product_of_options_builds_with_the_implied_heads_and_parameters(size, monkeypatch):
    monkeypatch.setattr(torch.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)  # meta: no values
    model_cfg = OmegaConf.load(Path(CONF_DIR) / "model" / f"{size}.yaml")
    model_cfg.n_encoder_layers = model_cfg.n_decoder_layers = 1
    d, h = model_cfg.d_model, model_cfg.n_heads
    hd, attentions = d // h, 3  # attentions: encoder self, decoder self, decoder cross
    build = instantiate(model_cfg, _partial_=True)  # EncoderDecoder with the size's values
    built = {g: {name: instantiate(node) for name, node in OPTIONS[g].items()} for g in GROUPS}
    mha_counts: dict[tuple, int] = {}
    combos = list(itertools.product(*(OPTIONS[g] for g in GROUPS), (False, True)))
    combos.sort(key=lambda c: c[3] != "mha" or c[4])  # plain mha first: the reference counts
    assert len(combos) == 2 * 6 * 2 * 3 * 2
    for norm, positional, feedforward, attention, qk_norm in combos:
        choice = dict(zip(GROUPS, (norm, positional, feedforward, attention), strict=True))
        parts = {g: built[g][o] for g, o in choice.items()}
        parts["attention"] = AttentionSpec(parts["attention"].n_kv_heads, qk_norm=qk_norm)
        with torch.device("meta"):
            model = build(vocab_size=8192, **parts)
        kv = parts["attention"].n_kv_heads or h
        for attn in (model.encoder_layers[0].attn, model.decoder_layers[0].self_attn):
            assert attn.qkv.weight.shape == (_qkv_width(h, kv, hd), d), choice
            assert (attn.q_norm is not None) == qk_norm
        assert model.decoder_layers[0].cross_attn.kv.weight.shape == (2 * kv * hd, d)
        assert type(model.encoder_positional).__name__ == OPTIONS["positional"][positional]._target_.rsplit(".", 1)[-1]
        # Grouped K/V heads remove 2 (H - KV) hd x d weights from each attention; qk_norm adds two gains of hd.
        key = (norm, positional, feedforward)
        if attention == "mha" and not qk_norm:
            mha_counts[key] = model.num_parameters()
        expected = mha_counts[key] - attentions * 2 * (h - kv) * hd * d + qk_norm * attentions * 2 * hd
        assert model.num_parameters() == expected, choice
