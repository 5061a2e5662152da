"""Logits processing: hand-worked values for every transform and their chain, Hugging Face's warpers as the
reference on random logits, and the errors a user can cause."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from enhanced_tx.generation import (
    BeamSearch,
    MinP,
    MultinomialSampler,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    mask_padded_vocab,
    process_logits,
)

INF = math.inf
NONE = torch.zeros(1, 0, dtype=torch.long)  # nothing generated yet: [B=1, t=0]


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _ids(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# ----------------------------------------------------------------------------- hand-worked values
def test_repetition_penalty_divides_positive_multiplies_negative_once_per_token():
    # token 0 (2.0) appears twice but is divided once: 2.0 / 2 = 1.0; token 1 (-1.0) -> -1.0 * 2 = -2.0
    out = process_logits(_t([2.0, -1.0, 0.5, 3.0]), _ids([0, 1, 0]), repetition_penalty=2.0)
    torch.testing.assert_close(out, _t([1.0, -2.0, 0.5, 3.0]), rtol=0, atol=0)


def test_repetition_penalty_with_nothing_generated_is_identity():
    logits = _t([2.0, -1.0, 0.5])
    torch.testing.assert_close(process_logits(logits, NONE, repetition_penalty=3.0), logits, rtol=0, atol=0)


def test_temperature_divides():
    out = process_logits(_t([1.0, -2.0, 4.0]), NONE, temperature=0.5)
    torch.testing.assert_close(out, _t([2.0, -4.0, 8.0]), rtol=0, atol=0)


def test_temperature_zero_keeps_only_the_argmax():
    out = process_logits(_t([0.1, 2.0, -1.0], [5.0, 1.0, 4.0]), torch.zeros(2, 0, dtype=torch.long), temperature=0)
    torch.testing.assert_close(out, _t([-INF, 2.0, -INF], [5.0, -INF, -INF]), rtol=0, atol=0)


def test_top_k_keeps_ties_at_the_kth_value():
    # sorted: 3, 2, 2, 1, 0 -> the 2nd largest is 2.0; both 2.0s stay, so 3 tokens survive top_k=2
    out = process_logits(_t([1.0, 3.0, 2.0, 2.0, 0.0]), NONE, top_k=2)
    torch.testing.assert_close(out, _t([-INF, 3.0, 2.0, 2.0, -INF]), rtol=0, atol=0)


@pytest.mark.parametrize("k", [0, 5, 50])
def test_top_k_zero_or_at_least_vocab_is_identity(k):
    logits = _t([1.0, 3.0, 2.0, 2.0, 0.0])
    torch.testing.assert_close(process_logits(logits, NONE, top_k=k), logits, rtol=0, atol=0)


PROBS = _t([0.5, 0.3, 0.15, 0.05]).log()  # ascending: 0.05, 0.15, 0.3, 0.5; cumulative: 0.05, 0.2, 0.5, 1.0


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [
        (0.75, [0, 1]),  # 0.5 < 0.75 <= 0.5 + 0.3: remove cumulative <= 0.25, i.e. 0.05 and 0.15
        (0.4, [0]),  # 0.5 alone reaches 0.4: remove cumulative <= 0.6
        (0.9, [0, 1, 2]),  # 0.8 < 0.9 <= 0.95: remove cumulative <= 0.1, only 0.05
        (1e-9, [0]),  # tiny p still keeps the most likely token
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    out = process_logits(PROBS, NONE, top_p=top_p)
    expected = torch.full_like(PROBS, -INF)
    expected[0, kept] = PROBS[0, kept]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_top_p_keeps_at_least_one_token_when_one_dominates():
    out = process_logits(_t([30.0, 0.0, 0.0]), NONE, top_p=0.01)
    torch.testing.assert_close(out, _t([30.0, -INF, -INF]), rtol=0, atol=0)


def test_exact_boundaries_follow_hugging_face():
    # Four zero logits: probabilities exactly 0.25, cumulative exactly 0.25, 0.5, 0.75, 1.0.
    uniform = torch.zeros(1, 4)
    # top_p 0.5: two tokens reach 0.5 exactly, so that set suffices (cumulative <= 1 - p = 0.5 is removed).
    assert torch.isfinite(process_logits(uniform, NONE, top_p=0.5)).sum() == 2
    # min_p 1.0: the threshold is the top probability itself; tokens tied with the top stay.
    torch.testing.assert_close(process_logits(uniform, NONE, min_p=1.0), uniform, rtol=0, atol=0)


def test_min_p_scales_the_threshold_by_the_top_probability():
    # threshold = 0.2 * 0.5 = 0.1: 0.15 stays, 0.05 goes
    out = process_logits(PROBS, NONE, min_p=0.2)
    expected = PROBS.clone()
    expected[0, 3] = -INF
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("n", "generated", "banned"),
    [
        (2, [5, 6, 5], [6]),  # suffix (5,) was followed by 6 before
        (3, [1, 2, 3, 1, 2], [3]),  # suffix (1, 2) was followed by 3 before
        (2, [1, 2, 3], []),  # suffix (3,) never seen before
        (1, [1, 3, 1], [1, 3]),  # unigrams: nothing generated may repeat
        (4, [1, 2, 3], []),  # fewer tokens than n: nothing to ban
    ],
)
def test_no_repeat_ngram_bans_the_completing_token(n, generated, banned):
    logits = torch.zeros(1, 8)
    out = process_logits(logits, _ids(generated), no_repeat_ngram_size=n)
    expected = torch.zeros(1, 8)
    expected[0, banned] = -INF
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_chain_applies_penalty_temperature_top_k_then_top_p():
    logits, generated = _t([3.0, 2.5, 1.0, 0.0]), _ids([0])
    # penalty 4: 3.0 / 4 = 0.75          -> [0.75, 2.5, 1.0, 0.0]
    # temperature 0.5: x / 0.5            -> [1.5, 5.0, 2.0, 0.0]
    # top_k 2: keep >= 2.0                -> [-inf, 5.0, 2.0, -inf]
    # top_p: p(5.0) = 1 / (1 + e^-3) = 0.9526, p(2.0) = 0.0474
    #   top_p 0.99 removes cumulative <= 0.01: nothing finite   -> [-inf, 5.0, 2.0, -inf]
    #   top_p 0.9 removes cumulative <= 0.1: the 0.0474 token   -> [-inf, 5.0, -inf, -inf]
    # (top-k before the penalty would have kept tokens 0 and 1 instead.)
    kwargs = dict(repetition_penalty=4.0, temperature=0.5, top_k=2)
    torch.testing.assert_close(
        process_logits(logits, generated, top_p=0.99, **kwargs), _t([-INF, 5.0, 2.0, -INF]), rtol=0, atol=0
    )
    torch.testing.assert_close(
        process_logits(logits, generated, top_p=0.9, **kwargs), _t([-INF, 5.0, -INF, -INF]), rtol=0, atol=0
    )


def test_process_logits_does_not_modify_its_input():
    logits = _t([3.0, 2.5, 1.0, 0.0])
    before = logits.clone()
    process_logits(logits, _ids([0, 1]), repetition_penalty=2.0, temperature=0.5, top_k=2, top_p=0.5)
    torch.testing.assert_close(logits, before, rtol=0, atol=0)


def test_mask_padded_vocab_sets_ids_past_the_real_vocab_to_minus_inf():
    logits = torch.randn(2, 128)
    out = mask_padded_vocab(logits, 100)
    torch.testing.assert_close(out[:, :100], logits[:, :100], rtol=0, atol=0)
    assert torch.isneginf(out[:, 100:]).all()
    torch.testing.assert_close(mask_padded_vocab(logits, 128), logits, rtol=0, atol=0)


# ----------------------------------------------------------------------------- Hugging Face as reference
def _random_case(seed: int, b: int = 4, v: int = 50, t: int = 12):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, v, generator=g) * 3
    generated = torch.randint(0, 6, (b, t), generator=g)  # small id range: repeats and repeated n-grams
    return logits, generated


def _assert_away_from_top_p_boundary(scores: torch.Tensor, top_p: float) -> None:
    """A cumulative probability within float error of 1 - top_p would make the comparison a coin flip."""
    cumulative = scores.sort(dim=-1).values.softmax(-1).cumsum(-1)
    assert (cumulative - (1 - top_p)).abs().min() > 1e-4


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (RepetitionPenalty(1.3), RepetitionPenaltyLogitsProcessor(1.3)),
        (RepetitionPenalty(0.7), RepetitionPenaltyLogitsProcessor(0.7)),
        (Temperature(0.7), TemperatureLogitsWarper(0.7)),
        (TopK(1), TopKLogitsWarper(1)),
        (TopK(7), TopKLogitsWarper(7)),
        (TopK(50), TopKLogitsWarper(50)),
        (TopP(0.3), TopPLogitsWarper(0.3)),
        (TopP(0.9), TopPLogitsWarper(0.9)),
        (MinP(0.1), MinPLogitsWarper(0.1)),
        (NoRepeatNGram(1), NoRepeatNGramLogitsProcessor(1)),
        (NoRepeatNGram(2), NoRepeatNGramLogitsProcessor(2)),
        (NoRepeatNGram(3), NoRepeatNGramLogitsProcessor(3)),
    ],
    ids=lambda p: type(p).__name__ + str(next(iter(vars(p).values()))),
)
def test_each_transform_matches_hugging_face(seed, ours, reference):
    logits, generated = _random_case(seed)
    if isinstance(ours, TopP):
        _assert_away_from_top_p_boundary(logits, ours.p)
    torch.testing.assert_close(ours(generated, logits), reference(generated, logits.clone()), rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_process_logits_matches_the_hugging_face_chain(seed):
    logits, generated = _random_case(seed)
    reference = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.2),
            NoRepeatNGramLogitsProcessor(2),
            TemperatureLogitsWarper(0.8),
            TopKLogitsWarper(20),
            TopPLogitsWarper(0.8),
            MinPLogitsWarper(0.05),
        ]
    )
    out = process_logits(
        logits,
        generated,
        repetition_penalty=1.2,
        no_repeat_ngram_size=2,
        temperature=0.8,
        top_k=20,
        top_p=0.8,
        min_p=0.05,
    )
    expected = reference(generated, logits.clone())
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(torch.isneginf(out), torch.isneginf(expected))


# ----------------------------------------------------------------------------- errors a user can cause
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(top_p=0.0), "top_p must be in (0, 1]"),
        (dict(top_p=1.5), "top_p must be in (0, 1]"),
        (dict(top_p=-0.1), "top_p must be in (0, 1]"),
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(temperature=math.nan), "temperature must be >= 0"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
        (dict(repetition_penalty=-1.0), "repetition_penalty must be > 0"),
        (dict(top_k=-1), "top_k must be an integer >= 0"),
        (dict(top_k=2.5), "top_k must be an integer >= 0"),
        (dict(min_p=1.5), "min_p must be in [0, 1]"),
        (dict(no_repeat_ngram_size=-2), "no_repeat_ngram_size must be an integer >= 0"),
    ],
)
def test_invalid_values_raise_a_clear_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=r"^" + message.replace("(", r"\(").replace("[", r"\[")) as info:
        process_logits(torch.zeros(1, 4), NONE, **kwargs)
    assert "\n" not in str(info.value)
    assert repr(next(iter(kwargs.values()))) in str(info.value)  # the message shows the offending value
    with pytest.raises(ValueError, match=message.split(" ")[0]):
        MultinomialSampler(**kwargs)  # samplers check their values when Hydra builds them


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_beams=0), "num_beams must be an integer >= 1"),
        (dict(early_stopping="never"), "early_stopping must be true or false"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    ],
)
def test_invalid_beam_search_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BeamSearch(**kwargs)
