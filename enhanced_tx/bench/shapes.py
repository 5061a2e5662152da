"""The benchmark shapes: one model size and the batch it is measured with, identical for every contender."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    name: str
    d_model: int
    n_heads: int
    n_layers: int  # per stack: encoder and decoder each
    ffn: int
    vocab: int
    batch: int
    src_len: int
    tgt_len: int

    @property
    def tokens_per_step(self) -> int:
        """Source plus target tokens of one training step (no padding in the benchmark)."""
        return self.batch * (self.src_len + self.tgt_len)


SHAPES: dict[str, Shape] = {
    "tiny": Shape("tiny", d_model=256, n_heads=4, n_layers=2, ffn=1024, vocab=8192, batch=8, src_len=128, tgt_len=128),
    "small": Shape(
        "small", d_model=768, n_heads=12, n_layers=6, ffn=3072, vocab=32000, batch=4, src_len=128, tgt_len=128
    ),
}
