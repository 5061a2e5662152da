"""Padding items into a model-ready `Batch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

IGNORE_INDEX = -100  # cross_entropy's default ignore_index


@dataclass
class Batch:
    """`src [B,S]`, `src_mask [B,S]` (True = real token), `tgt_in [B,T]` (BOS + tgt[:-1]), `labels [B,T]`
    (tgt, padding = -100)."""

    src: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) for custom batch types."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return self.src.shape[0]

    @property
    def num_src_tokens(self) -> torch.Tensor:
        return self.src_mask.sum()

    @property
    def num_tgt_tokens(self) -> torch.Tensor:
        """Non-padding target tokens: the loss denominator."""
        return (self.labels != IGNORE_INDEX).sum()

    @property
    def num_tokens(self) -> torch.Tensor:
        """Non-padding source + target tokens, a 0-d tensor on the batch's device (no host sync)."""
        return self.num_src_tokens + self.num_tgt_tokens


def collate(items: Sequence[dict[str, torch.Tensor]], pad_id: int, bos_id: int) -> Batch:
    """Pad a list of `{"src", "tgt"}` items to the longest source and longest target."""
    if not items:
        raise ValueError("collate needs at least one item")
    n = len(items)
    src_len = max(len(item["src"]) for item in items)
    tgt_len = max(1, *(len(item["tgt"]) for item in items))  # >= 1: tgt_in always holds BOS
    src = torch.full((n, src_len), pad_id, dtype=torch.long)
    src_mask = torch.zeros((n, src_len), dtype=torch.bool)
    labels = torch.full((n, tgt_len), IGNORE_INDEX, dtype=torch.long)
    for i, item in enumerate(items):
        s, t = item["src"], item["tgt"]
        src[i, : len(s)] = s
        src_mask[i, : len(s)] = True
        labels[i, : len(t)] = t
    # Teacher forcing: the decoder sees BOS then the target shifted right; padding positions get pad_id.
    tgt_in = torch.full((n, tgt_len), pad_id, dtype=torch.long)
    tgt_in[:, 0] = bos_id
    tgt_in[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE_INDEX, pad_id)
    return Batch(src=src, src_mask=src_mask, tgt_in=tgt_in, labels=labels)


class Collator:
    """`collate` with the tokenizer's pad and BOS ids bound; picklable for DataLoader workers."""

    def __init__(self, pad_id: int, bos_id: int) -> None:
        self.pad_id = pad_id
        self.bos_id = bos_id

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> Batch:
        return collate(items, self.pad_id, self.bos_id)
