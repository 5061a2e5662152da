"""Fast batch tokenization of raw text for the datasets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

CHUNK_CHARS = 4096  # lines are grouped into chunks this size: parallel, and few tokenization seams
BATCH_CHUNKS = 2048  # chunks per encode_batch call, bounds memory for big files


def text_chunks(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Consecutive runs of whole lines, about `chunk_chars` long; they concatenate back to `text`."""
    buf: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        buf.append(line)
        size += len(line)
        if size >= chunk_chars:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _plain_backend(tokenizer: PreTrainedTokenizerFast) -> Tokenizer:
    # A copy that reads "</s>" in user text as text, not as the EOS token: data must not inject specials.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    return backend


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without BOS/EOS or any other added special token."""
    backend = _plain_backend(tokenizer)
    ids: list[list[int]] = []
    for start in range(0, len(texts), BATCH_CHUNKS):
        batch = backend.encode_batch(list(texts[start : start + BATCH_CHUNKS]), add_special_tokens=False)
        ids.extend(enc.ids for enc in batch)
    return ids


def encode_stream(tokenizer: PreTrainedTokenizerFast, text: str) -> np.ndarray:
    """The whole text as one flat token array (uint16 when the vocabulary fits)."""
    dtype = token_dtype(len(tokenizer))
    chunks = list(text_chunks(text))
    parts = [np.asarray(ids, dtype=dtype) for ids in encode_texts(tokenizer, chunks)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
