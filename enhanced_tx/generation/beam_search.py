"""Beam search with Hugging Face's semantics, vectorised over the batch.

Each input keeps `num_beams` live beams. Every step scores all `num_beams * V` continuations by their summed
log-probability and takes the best `2 * num_beams`: those that end (EOS, or the last allowed step) and
rank among the first `num_beams` become finished hypotheses, scored `sum_logprobs / length**length_penalty`
(length counts the generated tokens, EOS included); the best `num_beams` that do not end live on.
An input is done when it holds `num_beams` finished hypotheses (`early_stopping=True`), or, with
`early_stopping=False`, also when no live beam can beat the worst of them (HF's heuristic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation.compiled_step import GRAPH_LIMIT
from enhanced_tx.generation.logits import apply_processors, build_processors
from enhanced_tx.generation.samplers import OnToken, Sampler
from enhanced_tx.generation.steppers import Stepper

NEG_INF = -math.inf


def _take(tensor: Tensor, index: Tensor) -> Tensor:
    """Rows of `tensor` [B, N, ...] at `index` [B, M] along dim 1 -> [B, M, ...]."""
    return tensor.gather(1, index.view(*index.shape, *([1] * (tensor.dim() - 2))).expand(-1, -1, *tensor.shape[2:]))


def _trim_after_first_eos(tokens: Tensor, eos_id: int) -> Tensor:
    """[B, T] padded with eos_id -> [B, n], n the longest row up to and including its first EOS."""
    if tokens.shape[1] == 0:
        return tokens
    is_eos = tokens == eos_id  # (B, T)
    lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, tokens.shape[1])  # (B,)
    return tokens[:, : int(lengths.max())]


_BLOCK = 64  # the padded vocabulary is a multiple of 64, so every row of sums splits into whole blocks


def _best_candidates(logprobs: Tensor, live_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The 2K best continuations of each input: (summed log-prob, parent beam, token), each (B, 2K), best first;
    the flat topk's over the input's K*V sums. `logprobs` (B*K, V) is overwritten.

    The 2K best sums lie in the 2K blocks of 64 with the largest maxima (a block holding none of them has its
    maximum below all of them), so one max per block and a topk over those blocks' sums replace a topk over
    every sum (1.03-1.04x a tiny beam step at B1 and B8).
    """
    b, k = live_scores.shape
    v, m = logprobs.shape[-1], 2 * k
    # in place: the same sums as a new tensor (addition commutes), without a fresh (B*K, V) buffer per step
    totals = logprobs.view(b, k, v).add_(live_scores[:, :, None]).view(b, k * v)  # (B, K*V)
    n = k * v
    if n % _BLOCK or n < 4 * m * _BLOCK:  # too few blocks to skip most of them
        scores, cand = totals.topk(m, dim=-1)
        return scores, cand // v, cand % v
    maxima = totals.view(b, n // _BLOCK, _BLOCK).amax(-1)  # (B, blocks)
    blocks = maxima.topk(m, dim=-1).indices.sort(-1).values  # (B, 2K) in index order, as the flat topk meets them
    index = (blocks[:, :, None] * _BLOCK + torch.arange(_BLOCK, device=totals.device)).view(b, m * _BLOCK)
    scores, pos = totals.gather(1, index).topk(m, dim=-1)
    cand = index.gather(1, pos)  # (B, 2K) positions in the K*V sums
    return scores, cand // v, cand % v


class BeamState(NamedTuple):
    live: Tensor  # (B, K, T) live beams
    live_scores: Tensor  # (B, K) their summed log-probs
    done_seqs: Tensor  # (B, K, T) finished hypotheses, best first
    done_scores: Tensor  # (B, K) their length-normalised scores
    done: Tensor  # (B,) bool: no hypothesis can be added any more


class BeamRules(NamedTuple):
    max_new_tokens: int
    eos_id: int
    length_penalty: float
    early_stopping: bool


def _advance(
    logprobs: Tensor, state: BeamState, step: Tensor, rules: BeamRules, normalised: bool
) -> tuple[BeamState, Tensor, Tensor]:
    """One step of the search from the (B*K, V) next-token scores (log-probs when `normalised`, else raw):
    the new state, the rows of the old beams the new ones continue (B*K,) and their new tokens (B*K, 1).
    `step` is a 0-d tensor, so that a compiled `_advance` is one graph for every step."""
    t_max, eos_id, length_penalty, early_stopping = rules
    live, live_scores, done_seqs, done_scores, done = state
    b, k = live_scores.shape
    logprobs = logprobs if normalised else logprobs.log_softmax(-1)
    cand_scores, parent, token = _best_candidates(logprobs, live_scores)  # (B, 2K) each, best first
    at_step = torch.arange(t_max, device=token.device) == step  # (T,)
    cand_seqs = torch.where(at_step, token[:, :, None], _take(live, parent))  # (B, 2K, T)
    ends = (token == eos_id) | (step == t_max - 1)  # (B, 2K)

    # Finished: ending candidates among the first k, merged with the earlier ones; keep the best k.
    # length**penalty in float64, rounded to fp32 by the division: what dividing by HF's Python float does
    normaliser = ((step + 1).double() ** length_penalty).float()
    in_top_k = torch.arange(2 * k, device=token.device) < k  # (2K,) candidate ranks allowed to finish
    new_scores = (cand_scores / normaliser).masked_fill(~ends | ~in_top_k | done[:, None], NEG_INF)
    done_scores, best = torch.cat([done_scores, new_scores], 1).topk(k, dim=-1)  # (B, K)
    done_seqs = _take(torch.cat([done_seqs, cand_seqs], 1), best)  # (B, K, T)

    # Live: the best k candidates that do not end.
    live_scores, keep = cand_scores.masked_fill(ends, NEG_INF).topk(k, dim=-1)  # (B, K)
    live = _take(cand_seqs, keep)  # (B, K, T)
    rows = torch.arange(b, device=token.device)  # (B,)
    index = (parent.gather(1, keep) + rows[:, None] * k).view(-1)  # (B*K,)

    full = done_scores[:, -1] > NEG_INF  # (B,) k finished hypotheses
    if not early_stopping:
        full &= live_scores[:, 0] / normaliser <= done_scores[:, -1]
    state = BeamState(live, live_scores, done_seqs, done_scores, done | full)
    return state, index, (live * at_step).sum(-1).view(b * k, 1)  # the tokens at `step`


_compiled_advance = None


def _advance_compiled() -> Callable[..., tuple[BeamState, Tensor, Tensor]]:
    """`_advance` as one compiled graph (`generate(compile=True)`): its ~30 small ops fused, no Python between them
    (tiny beam search: 1.03-1.04x the compiled step's speed at batch 1 and 8). Eager under a dispatch mode, as the
    step (`compiled_step`)."""
    global _compiled_advance
    if is_in_torch_dispatch_mode():
        return _advance
    if _compiled_advance is None:
        # static shapes, as the step: outputs of a graph with symbolic sizes would carry them into the step
        _compiled_advance = torch.compile(_advance, dynamic=False, recompile_limit=GRAPH_LIMIT)
    return _compiled_advance


class BeamSearch(Sampler):
    """Keeps the `num_beams` best partial sequences per input; returns the best finished one."""

    def __init__(
        self,
        num_beams: int = 4,
        length_penalty: float = 1.0,
        early_stopping: bool = True,
        no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0,
    ) -> None:
        if not isinstance(num_beams, int) or num_beams < 1:
            raise ConfigError(f"num_beams must be an integer >= 1, got {num_beams!r}")
        if not isinstance(early_stopping, bool):
            raise ConfigError(f"early_stopping must be true or false, got {early_stopping!r}")
        self.num_beams = num_beams
        self.length_penalty = float(length_penalty)
        self.early_stopping = early_stopping
        # Applied to log-probabilities, as Hugging Face does in beam search; none (all no-ops) by default.
        self.processors = build_processors(
            repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size
        )
        self.adjusts_scores = repetition_penalty != 1.0 or no_repeat_ngram_size > 0

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
        """Deterministic (`generator` is unused). Beams change until the end, so `on_token` is called for
        every position of the best sequences once the search is over."""
        b, k, t_max, device = stepper.batch_size, self.num_beams, max_new_tokens, stepper.device
        stepper.reorder(torch.arange(b, device=device).repeat_interleave(k))  # every input now has k rows: (B*K)

        live = torch.full((b, k, t_max), eos_id, dtype=torch.long, device=device)  # (B, K, T) live beams
        live_scores = torch.full((b, k), NEG_INF, device=device)  # (B, K) summed log-probs
        live_scores[:, 0] = 0.0  # start from one beam, or the first step would pick k copies of each token
        # finished hypotheses, best first: (B, K, T) and (B, K) length-normalised; (B,) no more can be added
        state = BeamState(live, live_scores, live.clone(), torch.full((b, k), NEG_INF, device=device),
                          torch.zeros(b, dtype=torch.bool, device=device))  # fmt: skip
        tokens = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)  # (B*K, 1)
        rules = BeamRules(t_max, eos_id, self.length_penalty, self.early_stopping)
        adjusts = self.adjusts_scores
        advance = _advance_compiled() if getattr(stepper, "compiled", False) and not adjusts else _advance

        steps = torch.arange(t_max, device=device)  # each a 0-d tensor for `_advance`
        for step in range(t_max):
            scores = stepper(tokens)  # (B*K, V)
            if adjusts:
                history = state.live.view(b * k, t_max)[:, :step]
                scores = apply_processors(self.processors, scores.log_softmax(-1), history)
            state, index, tokens = advance(scores, state, steps[step], rules, normalised=adjusts)
            stepper.reorder(index)
            if state.done.all():  # one host sync per step
                break

        best = _trim_after_first_eos(state.done_seqs[:, 0], eos_id)  # (B, n)
        if on_token is not None:
            for position in range(best.shape[1]):
                on_token(position, best[:, position])
        return best
