"""The cost model of the encoder-decoder: matmul FLOPs of a forward pass (MFU, the bench's roofline)."""

from __future__ import annotations

from typing import Any


def forward_flops(model: Any, src_len: int, tgt_len: int) -> float:
    """Matmul FLOPs of one forward pass of `model` (an EncoderDecoder) over one (source, target) pair, 2 per
    multiply-add.

    Dense layers are 2 x their weights per token; attention scores and the weighted sum cost 4·d per
    (query, key) pair, counting only the pairs a causal decoder actually attends (t(t+1)/2).
    """
    d, s, t = model.d_model, src_len, tgt_len
    enc_dense = sum(2 * p.numel() for p in model.encoder_layers.parameters() if p.dim() == 2)
    dec_dense = 0.0
    cross_kv = 0.0
    for block in model.decoder_layers:
        weights = [p for p in block.parameters() if p.dim() == 2]
        kv = 2 * block.cross_attn.kv.weight.numel()
        cross_kv += kv * s  # memory projected once per source token
        dec_dense += sum(2 * p.numel() for p in weights) - kv
    n_dec = len(model.decoder_layers)
    encoder = enc_dense * s + len(model.encoder_layers) * 4 * d * s * s
    decoder = dec_dense * t + cross_kv + n_dec * (4 * d * t * (t + 1) / 2 + 4 * d * t * s)
    head = 2 * d * model.padded_vocab_size * t
    return float(encoder + decoder + head)
