"""T5's span corruption: random spans of the window become sentinels in the encoder input, and the decoder
writes each sentinel followed by the span it replaced (Raffel et al. 2020, section 3.1.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from enhanced_tx.data.objectives.base import Item, Objective, long_tensor, token_ids
from enhanced_tx.errors import ConfigError

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

SENTINEL = "<extra_id_{}>"  # T5's spelling: sentinel i replaces the i-th corrupted span


class SpanCorruption(Objective):
    """Inputs of exactly `data.src_len` tokens (kept tokens + one sentinel per span); the raw window and the
    target length follow from the densities as in T5's `compute_input_and_target_lengths`, so nothing is
    truncated. `data.tgt_len` and `data.min_src_len` are not used."""

    def __init__(self, noise_density: float = 0.15, mean_noise_span_length: float = 3.0, num_sentinels: int = 100):
        if not 0.0 < noise_density < 1.0:
            raise ConfigError(f"objective.noise_density={noise_density} must be in (0, 1), e.g. 0.15")
        if mean_noise_span_length < 1.0:
            raise ConfigError(f"objective.mean_noise_span_length={mean_noise_span_length} must be >= 1, e.g. 3.0")
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.num_sentinels = num_sentinels

    def special_tokens(self) -> list[str]:
        return [SENTINEL.format(i) for i in range(self.num_sentinels)]

    def window_length(self, src_len: int, tgt_len: int) -> int:
        return self.lengths(src_len)[0]

    def bind(
        self, tokenizer: PreTrainedTokenizerFast, src_len: int, tgt_len: int, min_src_len: int
    ) -> SpanCorruptionTransform:
        window, _ = self.lengths(src_len)
        spans = self.spans(window)[2]
        if spans > self.num_sentinels:
            raise ConfigError(
                f"data.src_len={src_len} makes {spans} corrupted spans but objective.num_sentinels="
                f"{self.num_sentinels}; raise objective.num_sentinels or lower data.src_len"
            )
        sentinels = np.asarray(token_ids(tokenizer, self.special_tokens()[:spans], "span_corruption"))
        return SpanCorruptionTransform(self, src_len, sentinels, tokenizer.eos_token_id)

    def spans(self, length: int) -> tuple[int, int, int]:
        """(noise tokens, kept tokens, noise spans) of a window of `length` tokens (T5's rounding)."""
        noise = min(max(int(round(length * self.noise_density)), 1), length - 1)
        spans = min(max(int(round(noise / self.mean_noise_span_length)), 1), length - noise)  # a kept run each
        return noise, length - noise, spans

    def lengths(self, src_len: int) -> tuple[int, int]:
        """(raw window, target length) for inputs of at most `src_len` tokens: the longest window whose
        corrupted input (kept tokens + one sentinel a span) fits; the target is the spans, their sentinels
        and EOS."""
        if src_len < 2:
            raise ConfigError(f"data.src_len={src_len} is too short for span corruption; use at least 2")

        def input_length(window: int) -> int:
            _, kept, spans = self.spans(window)
            return kept + spans

        window = src_len
        while input_length(window + 1) <= src_len:
            window += 1
        noise, _, spans = self.spans(window)
        return window, noise + spans + 1

    def noise_mask(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """T5's `random_spans_noise_mask`: alternating kept/noise spans, kept first, noise last; the number of
        noise tokens and spans is fixed by the rounding in `spans`, their lengths are random."""
        noise, kept, spans = self.spans(length)
        noise_lengths = _random_segmentation(noise, spans, rng)
        kept_lengths = _random_segmentation(kept, spans, rng)
        interleaved = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)
        starts = np.cumsum(interleaved)[:-1]
        indicator = np.zeros(length, dtype=np.int64)
        indicator[starts] = 1
        return np.cumsum(indicator) % 2 == 1


def _random_segmentation(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of `segments` non-empty parts of `items` items, uniformly at random."""
    first = np.zeros(items, dtype=bool)
    first[1 + rng.choice(items - 1, segments - 1, replace=False)] = True
    return np.bincount(np.cumsum(first), minlength=segments)


class SpanCorruptionTransform:
    def __init__(self, objective: SpanCorruption, src_len: int, sentinels: np.ndarray, eos_id: int) -> None:
        self.objective = objective
        self.window, self.max_tgt_len = objective.lengths(src_len)
        self.max_src_len = src_len
        self.default_stride = self.window  # windows back to back
        self.sentinels = sentinels
        self.eos_id = eos_id

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> Item:
        tokens = np.asarray(window, dtype=np.int64)
        noise = self.objective.noise_mask(len(tokens), rng)
        return {
            "src": long_tensor(self._keep(tokens, noise)),
            "tgt": long_tensor([*self._keep(tokens, ~noise), self.eos_id]),
        }

    def _keep(self, tokens: np.ndarray, drop: np.ndarray) -> np.ndarray:
        """`tokens` with each run of `drop` replaced by the next sentinel (T5's noise_span_to_unique_sentinel)."""
        run_starts = drop & ~np.concatenate([[False], drop[:-1]])
        sentinel_of = self.sentinels[np.clip(np.cumsum(run_starts) - 1, 0, None)]
        out = np.where(run_starts, sentinel_of, tokens)
        return out[~drop | run_starts]
