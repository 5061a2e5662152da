"""The config tree: every group option composes, lands where it should, and builds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from .conftest import CONF_DIR, compose_train

SIZES = ["tiny", "small", "medium", "large"]
NORMS = ["rmsnorm", "layernorm"]
POSITIONAL = ["rope", "sinusoidal", "learned", "none", "t5_bias", "alibi"]
ATTENTION = ["mha", "gqa", "mqa"]
# True parameter counts at the default vocabulary (BPE 8192) with GELU; README's table shows the same.
DOCUMENTED_PARAMS = {"tiny": 5_770_240, "small": 105_406_464, "medium": 243_312_640, "large": 561_067_520}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_group_folders_hold_exactly_the_documented_options():
    assert _options("model") == sorted(SIZES)
    assert _options("norm") == sorted(NORMS)
    assert _options("positional") == sorted(POSITIONAL)
    assert _options("attention") == sorted(ATTENTION)
    assert _options("precision") == ["auto", "bf16", "fp16", "fp32"]


@pytest.mark.parametrize("group", ["norm", "positional", "feedforward", "attention"])
def test_package_header_is_the_first_line_and_lands_under_model(group, tmp_path):
    for option in _options(group):
        first_line = (Path(CONF_DIR) / group / f"{option}.yaml").read_text().splitlines()[0]
        assert first_line == f"# @package model.{group}", f"{group}/{option}.yaml"
        cfg = compose_train(tmp_path, f"{group}={option}")
        assert "_target_" in cfg.model[group] and group not in cfg  # under model., not at the top level


def test_default_config_composes_with_the_documented_choices(tmp_path):
    cfg = compose_train(tmp_path)
    assert cfg.model.d_model == 256 and cfg.model.n_heads == 4
    assert cfg.model.norm._target_.endswith("RMSNorm")
    assert cfg.model.positional._target_.endswith("RotaryEmbedding")
    assert cfg.data._target_.endswith("SampleData")
    assert cfg.precision._target_.endswith("training.precision.Precision")


@pytest.mark.parametrize("size, norm, positional", list(itertools.product(SIZES, NORMS, POSITIONAL)))
def test_every_size_norm_positional_combination_builds(size, norm, positional, tmp_path):
    cfg = compose_train(tmp_path, f"model={size}", f"norm={norm}", f"positional={positional}")
    device = "cpu" if size == "tiny" else "meta"  # big sizes: shapes only, no memory, fast
    with torch.device(device):
        model = instantiate(cfg.model, vocab_size=8192)
    assert type(model.encoder_layers[0].attn_norm).__name__.lower() == norm
    if positional == "learned":
        assert model.num_parameters() - model.num_parameters(non_embedding=True) > model.embed.weight.numel()
    if norm == "rmsnorm" and positional == "rope":
        assert model.num_parameters() == DOCUMENTED_PARAMS[size]


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_swiglu_parameter_count_is_what_the_readme_says(size, tmp_path):
    counts = {}
    for ff in ("gelu", "swiglu"):
        cfg = compose_train(tmp_path, f"model={size}", f"feedforward={ff}")
        with torch.device("meta"):
            counts[ff] = instantiate(cfg.model, vocab_size=8192).num_parameters()
    assert abs(counts["swiglu"] - counts["gelu"]) / counts["gelu"] < 0.012  # "within 1.2%"
    readme = (Path(CONF_DIR).parent / "README.md").read_text().splitlines()
    (row,) = [line for line in readme if line.startswith("| `feedforward`")]
    quoted = f"{counts['swiglu'] / 1e6:.2f}M vs {counts['gelu'] / 1e6:.2f}M" if size == "tiny" else "105.41M both"
    assert f"{size} {quoted}" in row and (size != "small" or counts["swiglu"] == counts["gelu"] == 105_406_464)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("backend", ["auto", "default"])
def test_linear_backend_default_routes_cpu_training_matmuls_by_the_measured_choice(backend, tmp_path):
    from enhanced_tx.model import linear_choice

    overrides = [] if backend == "auto" else [f"model.linear_backend={backend}"]
    cfg = compose_train(tmp_path, *overrides)
    assert cfg.model.linear_backend == backend
    model = instantiate(cfg.model, vocab_size=300)
    x = torch.randn(2, 5, cfg.model.d_model)
    up = model.encoder_layers[0].ffn.up
    y = up(x)
    measured = linear_choice.choose(*reversed(up.weight.shape), torch.float32, {"default": None, "onednn": None})
    routed_through_onednn = backend == "auto" and measured == "onednn"
    assert (type(y.grad_fn).__name__ == "_OnednnLinearBackward") == routed_through_onednn


def test_default_optimizer_is_the_fused_adamw(tmp_path):
    from enhanced_tx.training.optim import build_optimizer

    cfg = compose_train(tmp_path)
    optimizer = build_optimizer(instantiate(cfg.optimizer), torch.nn.Linear(4, 4))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
