"""`data=hf`: corpora from the Hugging Face `datasets` library (hub cache, `save_to_disk` folders, local files).

Pairs (`data.source_field` + `data.target_field`, dotted for nested fields such as `translation.en`) become
seq-to-seq items; one `data.text_field` becomes a token stream cut into windows by the objective (conf/objective/).
Tokenization is a `Dataset.map` cached by fingerprint (hf_tokenize.py); `data.streaming=true` reads the
split as it trains, and its position is saved in checkpoints (hf_stream.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset

from enhanced_tx.data.cache import resolve_cache_dir
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.hf_fields import check_fields, get_field
from enhanced_tx.data.hf_items import ArrowPairs, token_stream
from enhanced_tx.data.hf_load import open_split
from enhanced_tx.data.hf_stream import PairRows, StreamItems, TextWindows, encoded_rows
from enhanced_tx.data.hf_tokenize import tokenize_fields
from enhanced_tx.data.objectives import Objective, PrefixLM
from enhanced_tx.data.pairs import PairsDataset

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast


class HFData:
    """A Hugging Face dataset split as pairs or as text (see conf/data/hf.yaml for every key)."""

    def __init__(
        self,
        name: str,
        config: str | None = None,
        data_files: Any = None,
        split: str = "train",
        val_split: str | None = None,
        val_fraction: float = 0.05,
        streaming: bool = False,
        val_rows: int = 1000,
        source_field: str | None = None,
        target_field: str | None = None,
        text_field: str | None = None,
        max_src_len: int = 256,
        max_tgt_len: int = 256,
        src_len: int = 128,
        tgt_len: int = 128,
        min_src_len: int = 8,
        stride: int | None = None,
        objective: Objective | None = None,
        seed: int = 0,
        max_tokens_per_batch: int | None = None,
        tokenizer_rows: int | None = None,
        num_proc: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        pairs = source_field is not None or target_field is not None
        if pairs == (text_field is not None) or (pairs and None in (source_field, target_field)):
            raise DataError(
                "data=hf needs either data.source_field and data.target_field (pairs) or data.text_field (text), "
                f"not source_field={source_field} target_field={target_field} text_field={text_field}"
            )
        if val_split is None and not 0.0 < val_fraction < 1.0:
            raise DataError(f"data.val_fraction={val_fraction} must be in (0, 1) when data.val_split is null")
        self.name, self.config, self.data_files = str(name), config, data_files
        self.split, self.val_split, self.val_fraction = split, val_split, val_fraction
        self.streaming, self.val_rows = streaming, val_rows
        self.fields = {"src": source_field, "tgt": target_field} if pairs else {"text": text_field}
        self.max_src_len, self.max_tgt_len = max_src_len, max_tgt_len
        self.src_len, self.tgt_len, self.min_src_len, self.stride = src_len, tgt_len, min_src_len, stride
        self.objective = objective or PrefixLM()
        self.seed, self.max_tokens_per_batch = seed, max_tokens_per_batch
        self.tokenizer_rows, self.num_proc, self.cache_dir = tokenizer_rows, num_proc, cache_dir
        self._splits: tuple[Any, Any] | None = None

    @property
    def is_pairs(self) -> bool:
        return "src" in self.fields

    @staticmethod
    def continues_source(settings) -> bool:
        """From a run's saved data settings: text continues its source, pairs answer it (generation prints)."""
        return settings.get("text_field") is not None

    def _keys(self) -> dict[str, str]:
        names = {"src": "data.source_field", "tgt": "data.target_field", "text": "data.text_field"}
        return {names[column]: field for column, field in self.fields.items()}

    def splits(self) -> tuple[Any, Any]:
        """(train, val) as `datasets` objects; val is None when it is held out of train later (text streams)."""
        if self._splits is None:
            train = open_split(self.name, self.config, self.data_files, self.split, self.streaming)
            check_fields(_features_or_first_row(train, self.name), self._keys(), self.name)
            if self.val_split is not None:
                val = open_split(
                    self.name, self.config, self.data_files, self.val_split, self.streaming, "data.val_split"
                )
            elif self.streaming:  # the first val_rows rows are validation, training starts after them
                train, val = train.skip(self.val_rows), train.take(self.val_rows)
            elif self.is_pairs:
                train, val = _random_split(train, self.val_fraction, self.seed, self.name)
            else:
                val = None  # text: the tail of the token stream (like data=text)
            self._splits = train, val
        return self._splits

    def tokenizer_corpus(self) -> Iterator[str]:
        """The training split's texts, read batch by batch (never loaded whole); `data.tokenizer_rows` caps it."""
        train, _ = self.splits()
        rows = iter(train)
        if not self.streaming and not self.is_pairs and self.val_split is None:
            rows = itertools.islice(rows, math.ceil(len(train) * (1 - self.val_fraction)))  # not the held-out tail
        for row in itertools.islice(rows, self.tokenizer_rows):
            for field in self.fields.values():
                yield str(get_field(row, field))

    def build(self, tokenizer: PreTrainedTokenizerFast, cache_dir: str | Path | None = None) -> tuple[Any, Dataset]:
        """(train, val): map-style datasets, or with `data.streaming` a `StreamItems` and a map-style val."""
        train, val = self.splits()
        cache = resolve_cache_dir(self.cache_dir or cache_dir)
        if self.streaming:
            return self._stream(train, tokenizer), self._materialised(val, tokenizer)
        columns = dict(self.fields)
        eos = {column: column != "src" for column in columns}  # targets and text rows end with EOS
        train_ids = tokenize_fields(train, tokenizer, columns, eos, cache, self.num_proc)
        val_ids = None if val is None else tokenize_fields(val, tokenizer, columns, eos, cache, self.num_proc)
        if self.is_pairs:
            return (ArrowPairs(train_ids, self.max_src_len, self.max_tgt_len),
                    ArrowPairs(val_ids, self.max_src_len, self.max_tgt_len))  # fmt: skip
        tokens = token_stream(train_ids, "text", len(tokenizer))
        if val_ids is not None:
            return self._windows(tokens, tokenizer, 0, "data.split"), self._windows(
                token_stream(val_ids, "text", len(tokenizer)), tokenizer, 1, "data.val_split"
            )
        window = self.objective.window_length(self.src_len, self.tgt_len)
        n_val = max(math.ceil(len(tokens) * self.val_fraction), window)
        self._check_tokens(len(tokens) - n_val, window, "data.split", f" plus {n_val} held out for validation")
        return (self._windows(tokens[: len(tokens) - n_val], tokenizer, 0, "data.split"),
                self._windows(tokens[len(tokens) - n_val :], tokenizer, 1, "data.split"))  # fmt: skip

    def _windows(self, tokens: np.ndarray, tokenizer: PreTrainedTokenizerFast, stream: int, key: str) -> Dataset:
        self._check_tokens(len(tokens), self.objective.window_length(self.src_len, self.tgt_len), key, "")
        seed = int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0])
        return self.objective.dataset(
            tokens, tokenizer, self.src_len, self.tgt_len, self.min_src_len, self.stride, seed
        )

    def _check_tokens(self, n: int, window: int, key: str, extra: str) -> None:
        if n < window:
            split = self.split if key == "data.split" else self.val_split
            raise DataError(
                f"{key}={split} of data.name={self.name} has {n} tokens{extra}, fewer than one window of {window}; "
                "use more data or smaller data.src_len/data.tgt_len"
            )

    def _stream(self, train: Any, tokenizer: PreTrainedTokenizerFast) -> StreamItems:
        if self.is_pairs:
            return PairRows(train, tokenizer, self.fields, self.max_src_len, self.max_tgt_len)
        transform = self.objective.bind(tokenizer, self.src_len, self.tgt_len, self.min_src_len)
        return TextWindows(train, tokenizer, self.fields["text"], transform, self.stride, self.seed)

    def _materialised(self, val: Any, tokenizer: PreTrainedTokenizerFast) -> Dataset:
        """The first `data.val_rows` rows of a streamed validation split, in memory."""
        rows = list(itertools.islice(encoded_rows(val, tokenizer, self.fields), self.val_rows))
        if self.is_pairs:
            src = [r["src"][: self.max_src_len] for r in rows]
            tgt = [
                r["tgt"] if len(r["tgt"]) <= self.max_tgt_len else [*r["tgt"][: self.max_tgt_len - 1], r["tgt"][-1]]
                for r in rows
            ]
            return PairsDataset(src, tgt, len(tokenizer))
        tokens = np.asarray([t for r in rows for t in r["text"]], dtype=np.int64)
        return self._windows(tokens, tokenizer, 1, "data.val_split" if self.val_split else "data.split")


def _features_or_first_row(dataset: Any, name: str) -> Any:
    features = getattr(dataset, "features", None)
    if features is not None:
        return features
    try:
        return next(iter(dataset))  # a stream whose features are unknown until read
    except StopIteration:
        raise DataError(f"data.name={name}: the split is empty") from None


def _random_split(dataset: Any, fraction: float, seed: int, name: str) -> tuple[Any, Any]:
    """A random `fraction` of the rows held out (by `seed`), each part in its original order."""
    if len(dataset) < 2:
        raise DataError(f"data.name={name} has {len(dataset)} row; need 2 to hold one out, or set data.val_split")
    n_val = min(max(1, round(len(dataset) * fraction)), len(dataset) - 1)
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.select(np.sort(order[n_val:])), dataset.select(np.sort(order[:n_val]))
