"""A map-style dataset of objective items over a flat token stream."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from enhanced_tx.data.objectives.base import Item, WindowTransform, item_rng


class WindowDataset(Dataset):
    """Item i is `transform(tokens[i * stride : i * stride + transform.window], rng(seed, i))`: a pure function
    of (tokens, seed, i), so reruns and resumes see the same items and a resume keeps no RNG state."""

    def __init__(self, tokens: np.ndarray, transform: WindowTransform, stride: int, seed: int) -> None:
        self.tokens = tokens
        self.transform = transform
        self.stride = stride
        self.seed = seed
        window = transform.window
        self._n = (len(tokens) - window) // stride + 1 if len(tokens) >= window else 0

    def __len__(self) -> int:
        return self._n

    @property
    def lengths(self) -> np.ndarray:
        """Upper bound of source + target tokens of each item (the token budget needs no exact lengths)."""
        return np.full(self._n, self.transform.max_src_len + self.transform.max_tgt_len, dtype=np.int64)

    @property
    def length_parts(self) -> np.ndarray:
        return np.tile([self.transform.max_src_len, self.transform.max_tgt_len], (self._n, 1))

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        start = index * self.stride
        return self.transform(self.tokens[start : start + self.transform.window], item_rng(self.seed, index))
