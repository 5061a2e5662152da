"""Data: tokenizer factories, data sources (sample corpus, text, pairs), collation and batch sampling.

A data config builds a *data source* with `tokenizer_corpus()` (text to train a BPE on) and
`build(tokenizer, cache_dir) -> (train, val)`; a tokenizer config builds a factory with `build(texts)`.
"""

from enhanced_tx.data.cache import default_cache_dir
from enhanced_tx.data.collate import IGNORE_INDEX, Batch, Collator, collate
from enhanced_tx.data.continuation import ContinuationDataset
from enhanced_tx.data.corpus import load_sample_corpus, sample_corpus_path
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.hf import HFData
from enhanced_tx.data.objectives import add_objective_tokens
from enhanced_tx.data.pairs import PairsData, PairsDataset
from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.data.text import SampleData, TextData
from enhanced_tx.data.tokenizers import (
    SPECIAL_TOKENS,
    BPETokenizer,
    ByteTokenizer,
    PretrainedTokenizer,
    tokenizer_fingerprint,
)

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
