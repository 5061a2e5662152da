"""Source/target pairs (translation-style tasks) from JSONL or TSV files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from enhanced_tx.data.encoding import encode_texts, token_dtype
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.pairs_format import Pair, read_pairs
from enhanced_tx.data.source_markers import check_source_markers, mark_source, marker_count

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast


class PairsDataset(Dataset):
    """Tokenized pairs stored flat (values + offsets): one array per side, not one per item."""

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], vocab_size: int) -> None:
        self._src, self._src_offsets = _ragged(src, token_dtype(vocab_size))
        self._tgt, self._tgt_offsets = _ragged(tgt, token_dtype(vocab_size))

    def __len__(self) -> int:
        return len(self._src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self._src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self._tgt_offsets)

    @property
    def lengths(self) -> np.ndarray:
        """Source + target tokens of each item (for length bucketing)."""
        return self.src_lengths + self.tgt_lengths

    @property
    def length_parts(self) -> np.ndarray:
        """[N, 2] source and target tokens of each item: token-budget batches pad the two separately."""
        return np.stack([self.src_lengths, self.tgt_lengths], axis=1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        src = self._src[self._src_offsets[index] : self._src_offsets[index + 1]]
        tgt = self._tgt[self._tgt_offsets[index] : self._tgt_offsets[index + 1]]
        return {"src": torch.from_numpy(src.astype(np.int64)), "tgt": torch.from_numpy(tgt.astype(np.int64))}


def _ragged(rows: Sequence[Sequence[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.fromiter((t for r in rows for t in r), dtype=dtype, count=int(offsets[-1]))
    return values, offsets


class PairsData:
    """JSONL (configurable field names) or TSV pairs; the target ends with EOS, the source carries
    `source_markers` (none, eos, or bos_eos: `enhanced_tx.data.source_markers`).

    Validation: `val_path`, or else a `val_fraction` of the pairs held out at random (by `seed`; files
    are often sorted, so a tail would not be representative).
    """

    continues_source = False  # a model trained on pairs answers its source (generation prints only the answer)

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        format: str = "auto",  # shadows the builtin: it is the config key users write
        source_field: str = "source",
        target_field: str = "target",
        max_src_len: int = 256,
        max_tgt_len: int = 256,
        val_fraction: float = 0.05,
        skip_bad_lines: bool = False,
        seed: int = 0,
        max_tokens_per_batch: int | None = None,
        source_markers: str = "none",
    ) -> None:
        self.source_markers = check_source_markers(source_markers)
        if max_tokens_per_batch is not None and max_tokens_per_batch < 1:
            raise DataError(f"data.max_tokens_per_batch={max_tokens_per_batch} must be >= 1 (or null: off)")
        if max_src_len < 1 + marker_count(source_markers) or max_tgt_len < 2:
            raise DataError(
                f"data.max_src_len={max_src_len} must be >= 1 + its {marker_count(source_markers)} "
                f"data.source_markers and data.max_tgt_len={max_tgt_len} >= 2 (the target keeps room for EOS)"
            )
        if val_path is None and not 0.0 < val_fraction < 1.0:
            raise DataError(f"data.val_fraction={val_fraction} must be in (0, 1) when data.val_path is not set")
        self.path = str(path)
        self.val_path = None if val_path is None else str(val_path)
        self.format = format
        self.source_field = source_field
        self.target_field = target_field
        self.max_src_len = max_src_len
        self.max_tgt_len = max_tgt_len
        self.val_fraction = val_fraction
        self.skip_bad_lines = skip_bad_lines
        self.seed = seed
        self.max_tokens_per_batch = max_tokens_per_batch  # read by the trainer's batch sampler
        self._split: tuple[list[Pair], list[Pair]] | None = None

    def _read(self, path: str, key: str) -> list[Pair]:
        return read_pairs(path, key, self.format, self.source_field, self.target_field, self.skip_bad_lines)

    def split(self) -> tuple[list[Pair], list[Pair]]:
        """(train, val) string pairs; parsed once."""
        if self._split is None:
            pairs = self._read(self.path, "data.path")
            if self.val_path is not None:
                self._split = pairs, self._read(self.val_path, "data.val_path")
            else:
                if len(pairs) < 2:
                    raise DataError(
                        f"data.path={self.path} has {len(pairs)} pair; need at least 2 to hold one out "
                        "for validation, or pass data.val_path"
                    )
                n_val = min(max(1, round(len(pairs) * self.val_fraction)), len(pairs) - 1)
                order = np.random.default_rng(self.seed).permutation(len(pairs))
                self._split = (
                    [pairs[i] for i in np.sort(order[n_val:])],  # file order kept within each split
                    [pairs[i] for i in np.sort(order[:n_val])],
                )
        return self._split

    def tokenizer_corpus(self) -> Iterator[str]:
        for source, target in self.split()[0]:
            yield source
            yield target

    def build(
        self, tokenizer: PreTrainedTokenizerFast, cache_dir: str | Path | None = None
    ) -> tuple[PairsDataset, PairsDataset]:
        train, val = self.split()
        return self._dataset(train, tokenizer), self._dataset(val, tokenizer)

    def _dataset(self, pairs: list[Pair], tokenizer: PreTrainedTokenizerFast) -> PairsDataset:
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        src = [
            mark_source(ids, self.source_markers, bos, eos, self.max_src_len)
            for ids in encode_texts(tokenizer, [s for s, _ in pairs])
        ]
        # Truncate before appending EOS, so long targets still end with it.
        tgt = [ids[: self.max_tgt_len - 1] + [eos] for ids in encode_texts(tokenizer, [t for _, t in pairs])]
        return PairsDataset(src, tgt, len(tokenizer))
