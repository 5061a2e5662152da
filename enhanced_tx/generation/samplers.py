"""Decoding strategies. Hydra builds one from `conf/sampler/*.yaml`; `generate` calls its `search`.

Every sampler has `search(stepper, *, max_new_tokens, bos_id, eos_id, generator, on_token)`, so the
decoding entry point never asks which kind it holds. Token-by-token samplers subclass `TokenSampler` and
only say how one next token is chosen (`select`); beam search (`beam_search.BeamSearch`) overrides `search`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from enhanced_tx.generation.logits import apply_processors, build_processors
from enhanced_tx.generation.steppers import Stepper

OnToken = Callable[[int, Tensor], None]  # on_token(step, tokens [B]) for streaming


class Sampler(ABC):
    """A decoding strategy: up to `max_new_tokens` tokens per row from a stepper's next-token scores."""

    draws_randomly: bool = False  # False: the same input always gives the same output (greedy, beam search)

    @abstractmethod
    def search(
        self,
        stepper: Stepper,
        *,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int,
        generator: torch.Generator | None = None,
        on_token: OnToken | None = None,
    ) -> Tensor:
        """-> LongTensor [B, n], n <= max_new_tokens: tokens after BOS, EOS included, eos_id after EOS."""


class TokenSampler(Sampler):
    """Chooses one next token per row per step with `select`; a finished row emits eos_id from then on."""

    @abstractmethod
    def select(self, logits: Tensor, generated: Tensor, generator: torch.Generator | None) -> Tensor:
        """Next-token scores [B, V] and the row's tokens so far [B, t] -> next tokens, LongTensor [B]."""

    def search(
        self,
        stepper: Stepper,
        *,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int,
        generator: torch.Generator | None = None,
        on_token: OnToken | None = None,
    ) -> Tensor:
        b, device = stepper.batch_size, stepper.device
        out = torch.full((b, max_new_tokens), eos_id, dtype=torch.long, device=device)  # (B, T), preallocated
        finished = torch.zeros(b, dtype=torch.bool, device=device)  # (B,)
        tokens = torch.full((b, 1), bos_id, dtype=torch.long, device=device)  # (B, 1): the decoder's input
        n = 0
        while n < max_new_tokens:
            scores = stepper(tokens)  # (B, V)
            chosen = self.select(scores, out[:, :n], generator).masked_fill(finished, eos_id)  # (B,)
            out[:, n] = chosen
            finished |= chosen == eos_id
            if on_token is not None:
                on_token(n, chosen)
            n += 1
            if finished.all():  # the loop's one host sync per step
                break
            tokens = chosen[:, None]
        return out[:, :n]


class GreedySampler(TokenSampler):
    """The most likely token at every step (argmax)."""

    def select(self, logits: Tensor, generated: Tensor, generator: torch.Generator | None) -> Tensor:
        return logits.argmax(-1)  # (B,)


class MultinomialSampler(TokenSampler):
    """Samples from the processed distribution: repetition penalty, no-repeat-n-gram, temperature,
    top-k, top-p, min-p (see `logits.build_processors`). Values are checked here, at construction."""

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        min_p: float = 0.0,
        no_repeat_ngram_size: int = 0,
    ) -> None:
        self.draws_randomly = temperature > 0  # temperature 0 is greedy
        self.processors = build_processors(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            min_p=min_p,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )

    def select(self, logits: Tensor, generated: Tensor, generator: torch.Generator | None) -> Tensor:
        probs = apply_processors(self.processors, logits, generated).softmax(-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
