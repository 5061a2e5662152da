"""Model items from a tokenized Hugging Face dataset: pairs read from Arrow row by row, text as one stream."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset

from enhanced_tx.data.encoding import token_dtype


class ArrowPairs(Dataset):
    """Items `{"src", "tgt"}` of a dataset with `src` and `tgt` id columns, truncated to the given lengths
    (the target keeps its final EOS). Rows stay in the memory-mapped Arrow file until asked for."""

    def __init__(self, dataset: Any, max_src_len: int, max_tgt_len: int) -> None:
        self.dataset = dataset.with_format("numpy")
        self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
        src = np.minimum(_list_lengths(dataset, "src"), max_src_len)
        tgt = np.minimum(_list_lengths(dataset, "tgt"), max_tgt_len)
        self.length_parts = np.stack([src, tgt], axis=1)  # [N, 2]: token-budget batches pad each side
        self.lengths = src + tgt

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        row = self.dataset[int(index) % len(self)]
        src = np.asarray(row["src"], dtype=np.int64)[: self.max_src_len]
        tgt = np.asarray(row["tgt"], dtype=np.int64)
        if len(tgt) > self.max_tgt_len:  # truncate before the EOS, so a long target still ends with it
            tgt = np.append(tgt[: self.max_tgt_len - 1], tgt[-1])
        return {"src": torch.from_numpy(src), "tgt": torch.from_numpy(tgt)}


def _list_lengths(dataset: Any, column: str) -> np.ndarray:
    return pc.list_value_length(dataset.data.column(column)).to_numpy(zero_copy_only=False).astype(np.int64)


def token_stream(dataset: Any, column: str, vocab_size: int) -> np.ndarray:
    """All rows of an id column back to back (each row already ends with EOS: a document boundary)."""
    chunked: pa.ChunkedArray = dataset.data.column(column)
    values = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in chunked.chunks]
    dtype = token_dtype(vocab_size)
    return np.concatenate(values).astype(dtype) if values else np.zeros(0, dtype=dtype)
