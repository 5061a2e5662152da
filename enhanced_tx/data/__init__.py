"""Data: tokenizer factories, data sources (sample corpus, text, pairs), collation and batch sampling.

A data config builds a *data source* with `tokenizer_corpus()` (text to train a BPE on) and
`build(tokenizer, cache_dir) -> (train, val)`; a tokenizer config builds a factory with `build(texts)`.
"""

from __future__ import annotations

import importlib
from typing import Any

from enhanced_tx.data.cache import default_cache_dir
from enhanced_tx.data.collate import IGNORE_INDEX, Batch, Collator, collate
from enhanced_tx.data.continuation import ContinuationDataset
from enhanced_tx.data.corpus import load_sample_corpus, sample_corpus_path
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.sampling import EpochBatchSampler

# These load their submodule on first use (PEP 562): they import transformers, and a command that needs only the
# pieces above (the trainer's collator and sampler, a config check) starts 2 s sooner on a slow CPU.
_LAZY = {  # name -> the submodule that defines it
    "BPETokenizer": "tokenizers",
    "ByteTokenizer": "tokenizers",
    "HFData": "hf",
    "PairsData": "pairs",
    "PairsDataset": "pairs",
    "PretrainedTokenizer": "tokenizers",
    "SPECIAL_TOKENS": "tokenizers",
    "SampleData": "text",
    "TextData": "text",
    "add_objective_tokens": "objectives",
    "tokenizer_fingerprint": "tokenizers",
}

__all__ = [
    "IGNORE_INDEX",
    "SPECIAL_TOKENS",
    "BPETokenizer",
    "Batch",
    "ByteTokenizer",
    "Collator",
    "ContinuationDataset",
    "DataError",
    "EpochBatchSampler",
    "HFData",
    "PairsData",
    "PairsDataset",
    "PretrainedTokenizer",
    "SampleData",
    "TextData",
    "add_objective_tokens",
    "collate",
    "default_cache_dir",
    "load_sample_corpus",
    "sample_corpus_path",
    "tokenizer_fingerprint",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
