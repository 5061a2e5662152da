"""Where `trainer.pack_tokens=auto` starts packing: padding-free vs padded training steps at low padding.

The tiny pairs model (post-norm, d256, 2 + 2 layers, vocab 8192), one thread, fp32 and bf16 autocast, two batch
shapes, each row shortened at random to give a mean padding of 0-20%. Each setting times 4 steps (forward, loss
through the trainer's `micro_batch_loss`, backward, fused AdamW) after a warm-up step, 3 rounds with the two
paths taking turns; it prints the best of each and their ratio (docs/benchmarks.md, "padding-free steps"):

    PYTHONPATH=. python benchmarks/pack_threshold.py
"""

from __future__ import annotations

import time
from functools import partial

import torch

from enhanced_tx.data.collate import IGNORE_INDEX, Batch
from enhanced_tx.model import EncoderDecoder, GeluMLP, RMSNorm, RotaryEmbedding
from enhanced_tx.model.blocks import PostNorm
from enhanced_tx.training.step_loss import micro_batch_loss

VOCAB = 8192


def padded_batch(b: int, s: int, t: int, padding: float, generator: torch.Generator) -> Batch:
    """Rows shortened by up to 2 x `padding` of their length (mean `padding`), pad token 0, labels -100 there."""
    cut = torch.rand(b, 2, generator=generator) * 2 * padding
    lengths = (torch.tensor([s, t]) * (1 - cut)).long().clamp(min=1)
    src_mask = torch.arange(s)[None] < lengths[:, :1]
    tgt_mask = torch.arange(t)[None] < lengths[:, 1:]
    src = torch.randint(4, VOCAB, (b, s), generator=generator).masked_fill(~src_mask, 0)
    tgt = torch.randint(4, VOCAB, (b, t), generator=generator)
    return Batch(src=src, src_mask=src_mask, tgt_in=tgt, labels=tgt.masked_fill(~tgt_mask, IGNORE_INDEX))


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = EncoderDecoder(VOCAB, norm=partial(RMSNorm), positional=partial(RotaryEmbedding),
                           feedforward=partial(GeluMLP), residual=PostNorm()).train()  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(1)

    def step(batch: Batch, pack: bool, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = micro_batch_loss(model, model, batch, pack=pack, chunk_tokens=4096)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for b, s, t in ((64, 16, 16), (32, 48, 48)):
        for padding in (0.0, 0.05, 0.1, 0.2):
            batch = padded_batch(b, s, t, padding, generator)
            real = int(batch.src_mask.sum()) + int((batch.labels != IGNORE_INDEX).sum())
            measured = 1 - real / (batch.src.numel() + batch.labels.numel())
            for bf16 in (False, True):
                best = {False: float("inf"), True: float("inf")}
                for round_ in range(3):
                    for pack in (False, True) if round_ % 2 == 0 else (True, False):
                        step(batch, pack, bf16)
                        began = time.perf_counter()
                        for _ in range(4):
                            step(batch, pack, bf16)
                        best[pack] = min(best[pack], (time.perf_counter() - began) / 4)
                print(f"B{b} S{s} T{t} padding {measured:.2f} {'bf16' if bf16 else 'fp32'}: padded "
                      f"{best[False] * 1e3:.1f} ms, packed {best[True] * 1e3:.1f} ms, "
                      f"packed {best[False] / best[True]:.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
