"""The prefix-LM (continuation) objective: the encoder reads a prefix, the decoder predicts what follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from enhanced_tx.data.continuation import ContinuationDataset
from enhanced_tx.data.objectives.base import Item, Objective, long_tensor

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast


class PrefixLM(Objective):
    """Today's default: a window of `src_len + tgt_len` tokens; the target is its last `tgt_len` tokens and
    the source the `p` tokens right before them, `p` drawn in `[min_src_len, src_len]` per window.

    Map-style data keeps `ContinuationDataset` (same items as before objectives existed); this transform
    serves streams.
    """

    def window_length(self, src_len: int, tgt_len: int) -> int:
        return src_len + tgt_len

    def bind(
        self, tokenizer: PreTrainedTokenizerFast, src_len: int, tgt_len: int, min_src_len: int
    ) -> PrefixLMTransform:
        return PrefixLMTransform(src_len, tgt_len, min_src_len)

    def dataset(
        self,
        tokens: np.ndarray,
        tokenizer: PreTrainedTokenizerFast,
        src_len: int,
        tgt_len: int,
        min_src_len: int,
        stride: int | None,
        seed: int,
    ) -> ContinuationDataset:
        return ContinuationDataset(tokens, src_len, tgt_len, min_src_len, stride or tgt_len, seed)


class PrefixLMTransform:
    def __init__(self, src_len: int, tgt_len: int, min_src_len: int) -> None:
        self.src_len, self.tgt_len, self.min_src_len = src_len, tgt_len, min_src_len
        self.window = src_len + tgt_len
        self.max_src_len, self.max_tgt_len = src_len, tgt_len
        self.default_stride = tgt_len  # every token after the first source is a target once

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> Item:
        prefix = int(rng.integers(self.min_src_len, self.src_len + 1))
        return {
            "src": long_tensor(window[self.src_len - prefix : self.src_len]),
            "tgt": long_tensor(window[self.src_len :]),
        }
