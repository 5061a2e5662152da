"""The continuation objective over a flat token stream: the encoder reads a prefix, the decoder what follows."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ContinuationDataset(Dataset):
    """Windows of `src_len + tgt_len` tokens taken every `stride` tokens.

    Item i: `tgt` is the `tgt_len` tokens after the window's first `src_len`, and `src` is the last
    `p_i` of those `src_len` tokens, the text right before the target. `p_i` in `[min_src_len, src_len]`
    is drawn once from `seed`, so an item is a pure function of (tokens, seed, i): resumes and reruns see
    the same data. With the default stride (= tgt_len) every token after the first window's source is a
    target exactly once per epoch.
    """

    def __init__(
        self, tokens: np.ndarray, src_len: int, tgt_len: int, min_src_len: int, stride: int, seed: int
    ) -> None:
        self.tokens = tokens
        self.src_len = src_len
        self.tgt_len = tgt_len
        self.stride = stride
        window = src_len + tgt_len
        n = (len(tokens) - window) // stride + 1 if len(tokens) >= window else 0
        rng = np.random.default_rng(seed)
        self.src_lengths = rng.integers(min_src_len, src_len + 1, size=n)

    def __len__(self) -> int:
        return len(self.src_lengths)

    @property
    def lengths(self) -> np.ndarray:
        """Source + target tokens of each item (for length bucketing)."""
        return self.src_lengths + self.tgt_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        boundary = index * self.stride + self.src_len  # first target token
        src = self.tokens[boundary - int(self.src_lengths[index]) : boundary]
        tgt = self.tokens[boundary : boundary + self.tgt_len]
        return {"src": _long(src), "tgt": _long(tgt)}


def _long(ids: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))
