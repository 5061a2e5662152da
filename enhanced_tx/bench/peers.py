"""The contenders, all built from config objects with random weights (no download, no network).

Every contender exposes the same two calls so that the timing code treats them alike:
`logits(src, tgt) -> [B, T, V]` (teacher-forced forward) and, where supported, greedy generation.
Dropout is off everywhere (our model's default), so the peers do the same arithmetic work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from torch import Tensor, nn

from enhanced_tx.bench.shapes import Shape
from enhanced_tx.model import EncoderDecoder, GeluMLP, RMSNorm, RotaryEmbedding

OURS = "ours"
BART = "bart"
T5 = "t5"
TORCH = "nn.Transformer"
PEERS = (BART, T5, TORCH)


@dataclass
class Contender:
    name: str
    model: nn.Module
    logits: Callable[[Tensor, Tensor], Tensor]  # (src [B,S], tgt [B,T]) -> [B, T, V]
    flops_per_token: float | None = None  # training FLOPs per (source + target) token, where known
    notes: list[str] = field(default_factory=list)


def build_ours(shape: Shape, **model_kwargs) -> Contender:
    """Our encoder-decoder in its default configuration: RMSNorm, rotary positions, GELU MLP."""
    model = EncoderDecoder(
        shape.vocab,
        norm=partial(RMSNorm),
        positional=partial(RotaryEmbedding),
        feedforward=partial(GeluMLP),
        d_model=shape.d_model,
        n_heads=shape.n_heads,
        n_encoder_layers=shape.n_layers,
        n_decoder_layers=shape.n_layers,
        ffn_mult=shape.ffn // shape.d_model,
        max_seq_len=1024,
        **model_kwargs,
    )
    return Contender(
        OURS,
        model,
        lambda src, tgt: model(src, tgt),
        flops_per_token=model.flops_per_token(shape.src_len, shape.tgt_len),
    )


def build_bart(shape: Shape) -> Contender:
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=shape.vocab,
        d_model=shape.d_model,
        encoder_layers=shape.n_layers,
        decoder_layers=shape.n_layers,
        encoder_attention_heads=shape.n_heads,
        decoder_attention_heads=shape.n_heads,
        encoder_ffn_dim=shape.ffn,
        decoder_ffn_dim=shape.ffn,
        max_position_embeddings=1024,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    model = BartForConditionalGeneration(config)
    return Contender(BART, model, lambda src, tgt: model(input_ids=src, decoder_input_ids=tgt).logits)


def build_t5(shape: Shape) -> Contender:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=shape.vocab,
        d_model=shape.d_model,
        d_kv=shape.d_model // shape.n_heads,
        d_ff=shape.ffn,
        num_layers=shape.n_layers,
        num_decoder_layers=shape.n_layers,
        num_heads=shape.n_heads,
        dropout_rate=0.0,
        feed_forward_proj="relu",
    )
    model = T5ForConditionalGeneration(config)
    return Contender(T5, model, lambda src, tgt: model(input_ids=src, decoder_input_ids=tgt).logits)


class TorchSeq2Seq(nn.Module):
    """`torch.nn.Transformer` (pre-LN, GELU, batch-first) with a tied token embedding and output head."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.embed = nn.Embedding(shape.vocab, shape.d_model)
        self.positions = nn.Embedding(1024, shape.d_model)
        self.transformer = nn.Transformer(
            d_model=shape.d_model,
            nhead=shape.n_heads,
            num_encoder_layers=shape.n_layers,
            num_decoder_layers=shape.n_layers,
            dim_feedforward=shape.ffn,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )

    def _embed(self, tokens: Tensor) -> Tensor:
        return self.embed(tokens) + self.positions.weight[: tokens.shape[1]]

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        hidden = self.transformer(self._embed(src), self._embed(tgt), tgt_mask=causal, tgt_is_causal=True)
        return hidden @ self.embed.weight.t()


def build_torch(shape: Shape) -> Contender:
    model = TorchSeq2Seq(shape)
    return Contender(TORCH, model, lambda src, tgt: model(src, tgt))


BUILDERS: dict[str, Callable[[Shape], Contender]] = {
    OURS: build_ours,
    BART: build_bart,
    T5: build_t5,
    TORCH: build_torch,
}
