"""Logits processing: the transforms applied to next-token scores before a token is chosen.

Each transform is one small class with `__call__(generated, scores) -> scores` (the Hugging Face
`LogitsProcessor` shape): `generated` is `[B, t]`, the decoder's own tokens so far (without BOS, possibly
`t = 0`), `scores` is `[B, V]`. Removed tokens get `-inf`; nothing is modified in place. The order in which
they are chained is fixed in one place, `build_processors`, and matches Hugging Face's: repetition penalty,
no-repeat-n-gram, temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from enhanced_tx.errors import ConfigError

__all__ = [
    "LogitsProcessor",
    "MinP",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "apply_processors",
    "build_processors",
    "mask_padded_vocab",
    "process_logits",
]

NEG_INF = -math.inf


class LogitsProcessor(Protocol):
    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor: ...


def mask_padded_vocab(logits: Tensor, vocab_size: int) -> Tensor:
    """Set the scores of ids >= `vocab_size` to -inf (the output head is padded to a multiple of 64)."""
    if vocab_size >= logits.size(-1):
        return logits
    padded = torch.arange(logits.size(-1), device=logits.device) >= vocab_size  # (V,)
    return logits.masked_fill(padded, NEG_INF)


class RepetitionPenalty:
    """Penalise every distinct token already generated once: positive scores / penalty, negative * penalty."""

    def __init__(self, penalty: float = 1.0) -> None:
        if not penalty > 0:
            raise ConfigError(f"repetition_penalty must be > 0 (1.0 disables it), got {penalty!r}")
        self.penalty = float(penalty)

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        if self.penalty == 1.0 or generated.size(1) == 0:
            return scores
        seen = scores.gather(1, generated)  # (B, t); a repeated id gathers the same score ...
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, generated, seen)  # ... and scatters the same value: penalised once


class NoRepeatNGram:
    """Ban every token that would complete an n-gram already present in `generated` (0 disables it)."""

    def __init__(self, ngram_size: int = 0) -> None:
        if not isinstance(ngram_size, int) or ngram_size < 0:
            raise ConfigError(f"no_repeat_ngram_size must be an integer >= 0 (0 disables it), got {ngram_size!r}")
        self.n = ngram_size

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        t = generated.size(1)
        if self.n == 0 or t < self.n:
            return scores
        prefix = generated[:, t - self.n + 1 :]  # (B, n-1): the n-gram the next token would complete
        windows = generated.unfold(1, self.n, 1)  # (B, t-n+1, n): every n-gram so far
        matches = (windows[..., :-1] == prefix[:, None, :]).all(-1)  # (B, t-n+1)
        vocab = scores.size(-1)
        # Windows that do not match ban a spare column past the vocabulary, dropped below.
        banned_ids = torch.where(matches, windows[..., -1].clamp(max=vocab), vocab)  # (B, t-n+1)
        banned = scores.new_zeros(scores.size(0), vocab + 1, dtype=torch.bool)
        banned.scatter_(1, banned_ids, True)  # (B, V+1)
        return scores.masked_fill(banned[:, :vocab], NEG_INF)


class Temperature:
    """Divide scores by the temperature; temperature 0 keeps only the argmax (greedy, our extension)."""

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 means greedy), got {temperature!r}")
        self.temperature = float(temperature)

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        if self.temperature == 1.0:
            return scores
        if self.temperature == 0.0:
            best = scores.argmax(-1, keepdim=True)  # (B, 1)
            return torch.full_like(scores, NEG_INF).scatter(1, best, scores.gather(1, best))
        return scores / self.temperature


class TopK:
    """Keep the tokens scoring at least the k-th largest score (ties at the k-th are kept); 0 disables it."""

    def __init__(self, top_k: int = 0) -> None:
        if not isinstance(top_k, int) or top_k < 0:
            raise ConfigError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
        self.k = top_k

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        if self.k == 0 or self.k >= scores.size(-1):
            return scores
        kth = scores.topk(self.k, dim=-1).values[:, -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches top_p."""

    def __init__(self, top_p: float = 1.0) -> None:
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1] (1.0 disables it), got {top_p!r}")
        self.p = float(top_p)

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        if self.p == 1.0:
            return scores
        ascending, order = scores.sort(dim=-1)  # (B, V)
        cumulative = ascending.softmax(-1).cumsum(-1)  # (B, V)
        # The tail whose total mass is <= 1 - p can go; the most likely token always stays.
        remove = cumulative <= 1 - self.p
        remove[:, -1] = False
        return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


class MinP:
    """Keep tokens whose probability is at least min_p times the most likely token's; 0 disables it."""

    def __init__(self, min_p: float = 0.0) -> None:
        if not 0 <= min_p <= 1:
            raise ConfigError(f"min_p must be in [0, 1] (0 disables it), got {min_p!r}")
        self.min_p = float(min_p)

    def __call__(self, generated: Tensor, scores: Tensor) -> Tensor:
        if self.min_p == 0.0:
            return scores
        probs = scores.softmax(-1)  # (B, V)
        threshold = self.min_p * probs.amax(-1, keepdim=True)  # (B, 1)
        return scores.masked_fill(probs < threshold, NEG_INF)  # the most likely token always passes


def build_processors(
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    min_p: float = 0.0,
    no_repeat_ngram_size: int = 0,
) -> list[LogitsProcessor]:
    """The one place that fixes the order of the transforms; invalid values raise ConfigError (a ValueError) here."""
    return [
        RepetitionPenalty(repetition_penalty),
        NoRepeatNGram(no_repeat_ngram_size),
        Temperature(temperature),
        TopK(top_k),
        TopP(top_p),
        MinP(min_p),
    ]


def apply_processors(processors: Sequence[LogitsProcessor], scores: Tensor, generated: Tensor) -> Tensor:
    """Run `processors` in order on `scores` [B, V] given `generated` [B, t]."""
    for processor in processors:
        scores = processor(generated, scores)
    return scores


def process_logits(
    logits: Tensor,
    generated: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    min_p: float = 0.0,
    no_repeat_ngram_size: int = 0,
) -> Tensor:
    """Apply repetition penalty, (no-repeat-n-gram,) temperature, top-k, top-p, (min-p) to `logits` [B, V].

    `generated` [B, t] holds the decoder's own tokens so far (t may be 0). Removed tokens get -inf;
    `temperature=0` keeps only the argmax. Invalid values raise ConfigError (a ValueError).
    """
    processors = build_processors(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        min_p=min_p,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
    return apply_processors(processors, logits, generated)
