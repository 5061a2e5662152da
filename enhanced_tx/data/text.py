"""Data sources with the continuation objective: a user's text file, or the built-in sample corpus."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset

from enhanced_tx.data.cache import atomic_write, resolve_cache_dir
from enhanced_tx.data.corpus import sample_corpus_path
from enhanced_tx.data.encoding import encode_stream, text_chunks
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.files import decode_text, read_bytes, read_text
from enhanced_tx.data.objectives import Objective, PrefixLM
from enhanced_tx.data.tokenizers import tokenizer_fingerprint

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

TOKEN_CACHE_VERSION = b"tokens-v1"  # bump when the tokenization procedure changes


class TextData:
    """A plain UTF-8 text file, continuation objective (see `ContinuationDataset`).

    Validation comes from `val_path`, or else from the last `val_fraction` of the token stream.
    """

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        src_len: int = 128,
        tgt_len: int = 128,
        min_src_len: int = 8,
        val_fraction: float = 0.05,
        seed: int = 0,
        stride: int | None = None,
        objective: Objective | None = None,
    ) -> None:
        if not 1 <= min_src_len <= src_len:
            raise DataError(f"data.min_src_len={min_src_len} must be between 1 and data.src_len={src_len}")
        if tgt_len < 1:
            raise DataError(f"data.tgt_len={tgt_len} must be at least 1")
        if val_path is None and not 0.0 < val_fraction < 1.0:
            raise DataError(f"data.val_fraction={val_fraction} must be in (0, 1) when data.val_path is not set")
        self.path = str(path)
        self.val_path = None if val_path is None else str(val_path)
        self.src_len = src_len
        self.tgt_len = tgt_len
        self.min_src_len = min_src_len
        self.val_fraction = val_fraction
        self.seed = seed
        self.stride = stride  # None: the objective's default (data.tgt_len for prefix_lm)
        if stride is not None and stride < 1:
            raise DataError(f"data.stride={stride} must be at least 1 (or null for data.tgt_len)")
        self.objective = objective or PrefixLM()  # conf/objective/, see enhanced_tx/data/objectives

    def source_path(self) -> str:
        return self.path

    @property
    def window(self) -> int:
        return self.objective.window_length(self.src_len, self.tgt_len)

    def tokenizer_corpus(self) -> Iterator[str]:
        """The training text in chunks of lines (the held-out tail is left out, approximately)."""
        text = read_text(self.source_path(), "data.path")
        if self.val_path is None:
            text = text[: int(len(text) * (1.0 - self.val_fraction))]
        yield from text_chunks(text)

    def build(self, tokenizer: PreTrainedTokenizerFast, cache_dir: str | Path | None = None) -> tuple[Dataset, Dataset]:
        path = self.source_path()
        tokens = cached_tokens(path, "data.path", tokenizer, cache_dir)
        if self.val_path is not None:
            train, val = tokens, cached_tokens(self.val_path, "data.val_path", tokenizer, cache_dir)
            self._check_length(train, path, "data.path", 0)
            self._check_length(val, self.val_path, "data.val_path", 0)
        else:
            # At least one full window held out, so validation is never empty.
            n_val = max(math.ceil(len(tokens) * self.val_fraction), self.window)
            self._check_length(tokens, path, "data.path", n_val)
            train, val = tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]
        return self._dataset(train, tokenizer, 0), self._dataset(val, tokenizer, 1)

    def _dataset(self, tokens: np.ndarray, tokenizer: PreTrainedTokenizerFast, stream: int) -> Dataset:
        seed = int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0])
        return self.objective.dataset(
            tokens, tokenizer, self.src_len, self.tgt_len, self.min_src_len, self.stride, seed
        )

    def _check_length(self, tokens: np.ndarray, path: str, key: str, held_out: int) -> None:
        if len(tokens) - held_out < self.window:
            extra = f" plus {held_out} held out for validation" if held_out else ""
            raise DataError(
                f"{key}={path} has {len(tokens)} tokens, fewer than one window of "
                f"data.src_len + data.tgt_len = {self.window}{extra}; "
                "use a longer file or smaller data.src_len/data.tgt_len"
            )


class SampleData(TextData):
    """The built-in corpus (stdlib docstrings, ~1 MB), continuation objective. No file needed."""

    def __init__(
        self,
        src_len: int = 128,
        tgt_len: int = 128,
        min_src_len: int = 8,
        val_fraction: float = 0.05,
        seed: int = 0,
        stride: int | None = None,
        cache_dir: str | None = None,
        objective: Objective | None = None,
    ) -> None:
        super().__init__(
            path="",  # see source_path: the corpus is built on first use, not at construction
            src_len=src_len,
            tgt_len=tgt_len,
            min_src_len=min_src_len,
            val_fraction=val_fraction,
            seed=seed,
            stride=stride,
            objective=objective,
        )
        self.cache_dir = cache_dir

    def source_path(self) -> str:
        return str(sample_corpus_path(self.cache_dir))


def cached_tokens(path: str, key: str, tokenizer: PreTrainedTokenizerFast, cache_dir: str | Path | None) -> np.ndarray:
    """The file tokenized once into `<cache>/tokens/*.npy`, keyed by file content and tokenizer."""
    data = read_bytes(path, key)
    digest = hashlib.sha256(TOKEN_CACHE_VERSION)
    digest.update(hashlib.sha256(data).digest())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    cache_file = resolve_cache_dir(cache_dir) / "tokens" / f"{Path(path).stem}-{digest.hexdigest()[:24]}.npy"
    if cache_file.is_file():
        return np.load(cache_file, mmap_mode="r")
    tokens = encode_stream(tokenizer, decode_text(data, path, key))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
            np.save(f, tokens)

    atomic_write(cache_file, write)
    return tokens
