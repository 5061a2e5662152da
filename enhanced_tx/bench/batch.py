"""Synthetic batches: random token ids, no padding, identical for every contender."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from enhanced_tx.bench.shapes import Shape


@dataclass
class Batch:
    src: Tensor  # (B, S)
    tgt_in: Tensor  # (B, T)
    labels: Tensor  # (B, T)


def make_batch(shape: Shape, device: torch.device, seed: int = 0) -> Batch:
    # Ids from 4 up: clear of the special ids of every peer (BART: 0-3, T5: 0-2).
    generator = torch.Generator().manual_seed(seed)

    def ids(length: int) -> Tensor:
        return torch.randint(4, shape.vocab, (shape.batch, length), generator=generator).to(device)

    return Batch(src=ids(shape.src_len), tgt_in=ids(shape.tgt_len), labels=ids(shape.tgt_len))
