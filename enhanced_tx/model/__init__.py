"""The enhanced encoder-decoder Transformer: plain PyTorch, importable without Hydra."""

from enhanced_tx.model.attention import AttentionSpec
from enhanced_tx.model.cache import DecoderCache
from enhanced_tx.model.feedforward import GeluMLP, SwiGLU
from enhanced_tx.model.norm import LayerNorm, RMSNorm
from enhanced_tx.model.position_bias import ALiBi, T5RelativeBias
from enhanced_tx.model.positional import (
    LearnedPositions,
    NoPositions,
    PositionalScheme,
    RotaryEmbedding,
    SinusoidalPositions,
)
from enhanced_tx.model.transformer import EncoderDecoder

__all__ = [
    "ALiBi",
    "AttentionSpec",
    "DecoderCache",
    "EncoderDecoder",
    "GeluMLP",
    "LayerNorm",
    "LearnedPositions",
    "NoPositions",
    "PositionalScheme",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "SwiGLU",
    "T5RelativeBias",
]
