"""Fast batch tokenization of raw text for the datasets."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

CHUNK_CHARS = 4096  # lines are grouped into chunks this size: parallel, and few tokenization seams
BATCH_CHUNKS = 256  # chunks per encode_batch call (~1M characters): bounds the token lists held at once


def text_chunks(text: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Consecutive runs of whole lines, about `chunk_chars` long; they concatenate back to `text`.

    A line longer than `chunk_chars` (a file without line breaks) is cut before a single space between two
    words, where the byte-level pre-tokenizer splits anyway (same tokens), else at `chunk_chars`: no chunk
    is much longer than that, so the tokenizer's memory stays bounded whatever the file's layout."""
    buf: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        for piece in _pieces(line, chunk_chars):
            buf.append(piece)
            size += len(piece)
            if size >= chunk_chars:
                yield "".join(buf)
                buf, size = [], 0
    if buf:
        yield "".join(buf)


def _pieces(line: str, limit: int) -> Iterator[str]:
    """`line` in pieces of at most `limit` characters, cut at whitespace where there is some."""
    start = 0
    while len(line) - start > limit:
        end = start + limit
        cut = line.rfind(" ", start + limit // 2, end)
        while cut > start and (line[cut - 1].isspace() or line[cut + 1].isspace()):
            cut = line.rfind(" ", start + limit // 2, cut)
        cut = cut if cut > start else end
        yield line[start:cut]
        start = cut
    yield line[start:]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _plain_backend(tokenizer: PreTrainedTokenizerFast) -> Tokenizer:
    # A copy that reads "</s>" in user text as text, not as the EOS token: data must not inject specials.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    return backend


def text_encoder(tokenizer: PreTrainedTokenizerFast) -> Callable[[Sequence[str]], list[list[int]]]:
    """`encode_texts` with the plain backend built once (a stream encodes row after row)."""
    backend = _plain_backend(tokenizer)
    return lambda texts: [enc.ids for enc in backend.encode_batch(list(texts), add_special_tokens=False)]


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without BOS/EOS or any other added special token."""
    backend = _plain_backend(tokenizer)
    ids: list[list[int]] = []
    for start in range(0, len(texts), BATCH_CHUNKS):
        batch = backend.encode_batch(list(texts[start : start + BATCH_CHUNKS]), add_special_tokens=False)
        ids.extend(enc.ids for enc in batch)
    return ids


def encode_stream(tokenizer: PreTrainedTokenizerFast, text: str) -> np.ndarray:
    """The whole text as one flat token array (uint16 when the vocabulary fits). Encoded a batch of chunks at a
    time, each batch's ids turned into arrays at once: Python lists never hold the whole file's tokens."""
    dtype = token_dtype(len(tokenizer))
    backend = _plain_backend(tokenizer)
    chunks = text_chunks(text)
    parts: list[np.ndarray] = []
    while batch := list(itertools.islice(chunks, BATCH_CHUNKS)):
        parts.extend(np.asarray(enc.ids, dtype=dtype) for enc in backend.encode_batch(batch, add_special_tokens=False))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
