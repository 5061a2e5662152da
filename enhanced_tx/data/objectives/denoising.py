"""BART's text infilling: spans with Poisson-distributed lengths, covering `mask_ratio` of the window, are
each replaced by one mask token; the decoder reconstructs the whole original (Lewis et al. 2020, 2.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from enhanced_tx.data.objectives.base import Item, Objective, long_tensor, token_ids
from enhanced_tx.errors import ConfigError

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

MASK = "<mask>"


class Denoising(Objective):
    """Windows of `data.src_len` tokens; the target is the window followed by EOS (`data.tgt_len` and
    `data.min_src_len` are not used). Zero-length spans are dropped (BART inserts a mask for them): the
    input is never longer than the window."""

    def __init__(self, mask_ratio: float = 0.3, poisson_lambda: float = 3.0) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"objective.mask_ratio={mask_ratio} must be in (0, 1), e.g. 0.3")
        if poisson_lambda <= 0:
            raise ConfigError(f"objective.poisson_lambda={poisson_lambda} must be positive, e.g. 3.0")
        self.mask_ratio = mask_ratio
        self.poisson_lambda = poisson_lambda

    def special_tokens(self) -> list[str]:
        return [MASK]

    def window_length(self, src_len: int, tgt_len: int) -> int:
        return src_len

    def bind(
        self, tokenizer: PreTrainedTokenizerFast, src_len: int, tgt_len: int, min_src_len: int
    ) -> DenoisingTransform:
        (mask_id,) = token_ids(tokenizer, [MASK], "denoising")
        return DenoisingTransform(self, src_len, mask_id, tokenizer.eos_token_id)

    def span_lengths(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """Poisson span lengths whose sum is exactly round(length x mask_ratio) (the last one trimmed)."""
        budget = min(max(int(round(length * self.mask_ratio)), 1), length - 1)
        lengths = rng.poisson(self.poisson_lambda, size=budget)
        while lengths.sum() < budget:  # rare: too many short draws
            lengths = np.concatenate([lengths, rng.poisson(self.poisson_lambda, size=budget)])
        cut = int(np.searchsorted(np.cumsum(lengths), budget))  # first span that reaches the budget
        lengths = lengths[: cut + 1].copy()
        lengths[cut] = budget - lengths[:cut].sum()
        return lengths[lengths > 0]

    def mask(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(masked [length] bool, span_start [length] bool): spans placed at random, one kept token at least
        between two spans so each span stays one mask token."""
        spans = self.span_lengths(length, rng)
        kept = length - int(spans.sum())
        spans = spans[: kept + 1]  # room for the separating kept tokens (only bites for extreme ratios)
        free = kept - (len(spans) - 1)  # kept tokens beyond the mandatory separators
        # stars and bars: a uniform split of `free` tokens into len(spans) + 1 gaps
        bars = np.sort(rng.choice(free + len(spans), len(spans), replace=False))
        gaps = np.diff(np.concatenate([[-1], bars])) - 1
        gaps[1:] += 1  # the separators
        starts = np.cumsum(gaps) + np.concatenate([[0], np.cumsum(spans)[:-1]])
        masked = np.zeros(length, dtype=bool)
        first = np.zeros(length, dtype=bool)
        for start, n in zip(starts, spans, strict=True):
            masked[start : start + n] = True
            first[start] = True
        return masked, first


class DenoisingTransform:
    def __init__(self, objective: Denoising, src_len: int, mask_id: int, eos_id: int) -> None:
        self.objective = objective
        self.window = self.max_src_len = src_len
        self.max_tgt_len = src_len + 1
        self.default_stride = src_len  # windows back to back
        self.mask_id, self.eos_id = mask_id, eos_id

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> Item:
        tokens = np.asarray(window, dtype=np.int64)
        masked, first = self.objective.mask(len(tokens), rng)
        src = np.where(first, self.mask_id, tokens)[~masked | first]
        return {"src": long_tensor(src), "tgt": long_tensor([*tokens, self.eos_id])}
