"""Shared test helpers: small models, deterministic seeds, offline W&B."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch

from enhanced_tx.model import (
    EncoderDecoder,
    GeluMLP,
    LayerNorm,
    LearnedPositions,
    NoPositions,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositions,
    SwiGLU,
)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIONAL_SCHEMES = {
    "rope": RotaryEmbedding,
    "sinusoidal": SinusoidalPositions,
    "learned": LearnedPositions,
    "none": NoPositions,
}


def make_model(
    positional: str = "rope", norm=RMSNorm, feedforward=GeluMLP, vocab_size: int = 97, seed: int = 0, **kwargs
) -> EncoderDecoder:
    torch.manual_seed(seed)
    config = dict(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, max_seq_len=64)
    config.update(kwargs)
    model = EncoderDecoder(
        vocab_size,
        norm=partial(norm),
        positional=partial(POSITIONAL_SCHEMES[positional]),
        feedforward=partial(feedforward),
        **config,
    )
    return model.eval()


@pytest.fixture(params=list(POSITIONAL_SCHEMES))
def positional(request) -> str:
    return request.param


@pytest.fixture(params=[(RMSNorm, GeluMLP), (LayerNorm, SwiGLU)], ids=["rmsnorm-gelu", "layernorm-swiglu"])
def variant(request):
    return request.param
