"""Decoding with a real model: cache equivalence, seeds, EOS handling, batching, beam search."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import BartConfig, BartForConditionalGeneration

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation import BeamSearch, GreedySampler, MultinomialSampler, Sampler, generate
from enhanced_tx.model import EncoderDecoder

from .conftest import make_model

PAD, BOS, EOS = 0, 1, 2
VOCAB = 100  # the model's head is padded to 128


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models decode one token at a time: thread start-up costs more than it saves (10x on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _lively_model(positional: str = "rope", vocab_size: int = VOCAB, seed: int = 0) -> EncoderDecoder:
    """A random model whose greedy output is not one token repeated (GPT-2 init is too flat for that)."""
    model = make_model(positional, vocab_size=vocab_size, seed=seed, n_encoder_layers=1, n_decoder_layers=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def _sources(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded source rows of the given lengths and their mask."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(3, VOCAB, (n,), generator=g)
    return src, src != PAD


def _force_eos(model: EncoderDecoder, monkeypatch, eos_step: list[int], bias: float = 1e4) -> list[int]:
    """Make EOS the argmax of row i at step eos_step[i] (-1: never), cached or not; counts decoder steps."""
    steps = torch.tensor(eos_step)
    calls = []

    def bump(logits: torch.Tensor, first_position: int) -> torch.Tensor:  # logits (B, t, V)
        positions = torch.arange(first_position, first_position + logits.shape[1])  # (t,)
        hit = steps[:, None] == positions[None, :]  # (B, t)
        return logits + bias * hit[..., None] * torch.nn.functional.one_hot(torch.tensor(EOS), logits.shape[-1])

    decode_step, forward = model.decode_step, model.forward

    def biased_decode_step(tokens, cache):
        calls.append(tokens.shape[1])
        offset = cache.offset
        logits, cache = decode_step(tokens, cache)
        return bump(logits, offset), cache

    monkeypatch.setattr(model, "decode_step", biased_decode_step)
    monkeypatch.setattr(model, "forward", lambda src, tgt, src_mask=None: bump(forward(src, tgt, src_mask), 0))
    return calls


def _sequence_logprob(model: EncoderDecoder, src: torch.Tensor, tokens: torch.Tensor) -> float:
    """Sum of log-probabilities (padded vocabulary masked) of `tokens` up to and including the first EOS."""
    tokens = tokens.tolist()
    if EOS in tokens:
        tokens = tokens[: tokens.index(EOS) + 1]
    tgt = torch.tensor([[BOS, *tokens]])
    with torch.no_grad():
        logits = model(src[None], tgt)[0, :-1, :VOCAB]  # (n, V)
    return logits.log_softmax(-1).gather(1, torch.tensor(tokens)[:, None]).sum().item()


def _gen(model, src, src_mask=None, **kwargs) -> torch.Tensor:
    kwargs.setdefault("max_new_tokens", 12)
    kwargs.setdefault("sampler", GreedySampler())
    return generate(model, src, src_mask, bos_id=BOS, eos_id=EOS, **kwargs)


# ----------------------------------------------------------------------------- token-by-token samplers
def test_greedy_with_cache_equals_greedy_without(positional):
    model = _lively_model(positional)
    src, mask = _sources([9, 5, 7])
    cached = _gen(model, src, mask, max_new_tokens=20)
    recomputed = _gen(model, src, mask, max_new_tokens=20, use_cache=False)
    assert cached.shape == (3, 20)
    assert len(set(cached.flatten().tolist())) >= 3  # not one token repeated: positions and prompts matter
    assert torch.equal(cached, recomputed)


def test_sampling_with_cache_equals_sampling_without():
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    sampler = MultinomialSampler(temperature=0.9, top_k=40, top_p=0.95, repetition_penalty=1.2)
    cached = _gen(model, src, mask, sampler=sampler, generator=torch.Generator().manual_seed(3))
    recomputed = _gen(model, src, mask, sampler=sampler, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(cached, recomputed)


def test_same_seed_same_sample_different_seed_different_sample():
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    sampler = MultinomialSampler(temperature=1.0)

    def sample(seed: int) -> torch.Tensor:
        return _gen(model, src, mask, max_new_tokens=20, sampler=sampler, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


def test_sampling_at_temperature_zero_is_greedy():
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    sampled = _gen(model, src, mask, sampler=MultinomialSampler(temperature=0.0), generator=torch.Generator())
    assert torch.equal(sampled, _gen(model, src, mask))


@pytest.mark.parametrize("use_cache", [True, False])
def test_eos_stops_a_row_and_finished_rows_emit_eos(monkeypatch, use_cache):
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    free = _gen(model, src, mask, use_cache=use_cache)
    assert not (free == EOS).any()  # without the bias no row ends, so the EOS below is the forced one
    calls = _force_eos(model, monkeypatch, eos_step=[2, 4, -1])
    out = _gen(model, src, mask, use_cache=use_cache)
    assert out.shape == (3, 12)
    assert out[0, :3].tolist() == [*free[0, :2].tolist(), EOS] and (out[0, 3:] == EOS).all()
    assert out[1, :5].tolist() == [*free[1, :4].tolist(), EOS] and (out[1, 5:] == EOS).all()
    assert torch.equal(out[2], free[2])  # the unfinished row is unaffected by the others finishing
    if use_cache:
        assert calls == [1] * 12  # one new token per step through the decoder


def test_generation_stops_when_every_row_has_finished(monkeypatch):
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    calls = _force_eos(model, monkeypatch, eos_step=[3, 1, 3])
    out = _gen(model, src, mask, max_new_tokens=12)
    assert out.shape == (3, 4)
    assert out[:, 3].tolist() == [EOS, EOS, EOS] and (out[1, 1:] == EOS).all()
    assert len(calls) == 4  # no decoder step after the last row finished


def test_padded_vocab_ids_are_never_generated(monkeypatch):
    model = _lively_model()
    decode_step = model.decode_step

    def favour_padding(tokens, cache):  # the padded ids 100..127 score highest
        logits, cache = decode_step(tokens, cache)
        return logits.index_add(-1, torch.arange(VOCAB, 128), torch.full((logits.shape[0], 1, 28), 1e4)), cache

    monkeypatch.setattr(model, "decode_step", favour_padding)
    src, mask = _sources([9, 5, 7])
    for sampler in (GreedySampler(), MultinomialSampler(), BeamSearch(num_beams=3)):
        out = _gen(model, src, mask, sampler=sampler, generator=torch.Generator().manual_seed(0))
        assert out.numel() and (out < VOCAB).all()


@pytest.mark.parametrize("sampler", [GreedySampler(), BeamSearch(num_beams=3)], ids=["greedy", "beam"])
def test_a_padded_batch_gives_what_each_prompt_gives_alone(sampler):
    model = _lively_model()
    lengths = [9, 3, 6]
    src, mask = _sources(lengths)
    batch = _gen(model, src, mask, sampler=sampler)
    for row, n in enumerate(lengths):
        alone = _gen(model, src[row : row + 1, :n], sampler=sampler)  # no padding, no mask
        assert torch.equal(batch[row, : alone.shape[1]], alone[0])
        assert (batch[row, alone.shape[1] :] == EOS).all()


def test_on_token_streams_every_step_in_order():
    model = _lively_model()
    src, mask = _sources([9, 5])
    seen = []
    out = _gen(model, src, mask, on_token=lambda step, tokens: seen.append((step, tokens.clone())))
    assert [step for step, _ in seen] == list(range(out.shape[1]))
    assert torch.equal(torch.stack([tokens for _, tokens in seen], 1), out)


def test_generate_restores_training_mode_and_needs_no_grad():
    model = _lively_model().train()
    src, mask = _sources([5])
    out = _gen(model, src, mask)
    assert model.training and not out.requires_grad


def test_decoding_avoids_cudnn_attention_and_restores_the_setting(monkeypatch):
    """cuDNN attention plans per shape; decoding has a new key length every step (10x slower on an H200)."""
    model = _lively_model()
    decode_step, seen = model.decode_step, []

    def recording_step(tokens, cache):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return decode_step(tokens, cache)

    monkeypatch.setattr(model, "decode_step", recording_step)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    _gen(model, *_sources([5]), max_new_tokens=3)
    assert seen == [False] * 3
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_generation_after_a_fused_adamw_step_sees_the_updated_weights():
    """The fused AdamW updates weights in place without bumping their version: packed copies must not survive."""
    from enhanced_tx.model import linear as linear_module

    model = make_model(vocab_size=2048, d_model=256, n_heads=4, n_encoder_layers=1, n_decoder_layers=1)
    model.set_linear_backend("onednn")  # always packed ("auto" packs where it measures faster)
    assert model.embed.weight.numel() * 4 >= 1 << 20  # the head gets packed
    src = torch.randint(3, 2048, (2, 9))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    for _ in range(2):
        generate(model, src, max_new_tokens=4, sampler=GreedySampler(), bos_id=1, eos_id=-1)
        assert not linear_module._packed_cache()  # copies dropped when generate() returns
        model.train()
        model(src, src[:, :5]).logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            reference = model(src, src[:, :5])
        with torch.inference_mode(), linear_module.packed_weights():
            packed = model(src, src[:, :5])
        torch.testing.assert_close(packed, reference, rtol=1e-4, atol=1e-4)


def test_zero_new_tokens_gives_an_empty_result():
    model = _lively_model()
    src, mask = _sources([5, 3])
    for sampler in (GreedySampler(), BeamSearch()):
        assert _gen(model, src, mask, max_new_tokens=0, sampler=sampler).shape == (2, 0)


# ----------------------------------------------------------------------------- beam search
@pytest.mark.parametrize("use_cache", [True, False])
def test_beam_search_with_one_beam_is_greedy(monkeypatch, use_cache):
    model = _lively_model()
    src, mask = _sources([9, 5, 7])
    _force_eos(model, monkeypatch, eos_step=[4, -1, 7])
    greedy = _gen(model, src, mask, use_cache=use_cache)
    beam = _gen(model, src, mask, sampler=BeamSearch(num_beams=1), use_cache=use_cache)
    assert torch.equal(beam, greedy)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = _lively_model()
    src, mask = _sources([9, 5, 7, 4])
    greedy = _gen(model, src, mask, max_new_tokens=10)
    beam = _gen(model, src, mask, max_new_tokens=10, sampler=BeamSearch(num_beams=4, length_penalty=0.0))
    gains = []
    for row, n in enumerate([9, 5, 7, 4]):
        ours, reference = (_sequence_logprob(model, src[row, :n], seq[row]) for seq in (beam, greedy))
        assert ours >= reference - 1e-4
        gains.append(ours - reference)
    assert max(gains) > 1e-3  # beam search actually found something better somewhere


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_exhaustive_beam_search_returns_the_best_sequence(length_penalty):
    """With num_beams >= V**(T-1) no prefix is ever pruned, so the result must be the brute-force best."""
    vocab, steps = 6, 3
    model = _lively_model(vocab_size=vocab, seed=1)
    src = torch.tensor([3, 5, 4, 1])

    def score(seq: tuple[int, ...]) -> float:
        tgt = torch.tensor([[BOS, *seq]])
        with torch.no_grad():
            logprobs = model(src[None], tgt)[0, :-1, :vocab].log_softmax(-1)  # (n, V)
        return logprobs.gather(1, torch.tensor(seq)[:, None]).sum().item() / len(seq) ** length_penalty

    complete = [
        seq
        for n in range(1, steps + 1)
        for seq in itertools.product(range(vocab), repeat=n)
        if EOS not in seq[:-1] and (seq[-1] == EOS or n == steps)
    ]
    best = max(complete, key=score)
    sampler = BeamSearch(num_beams=vocab ** (steps - 1), length_penalty=length_penalty)
    out = generate(model, src[None], max_new_tokens=steps, sampler=sampler, bos_id=BOS, eos_id=EOS)
    assert tuple(out[0].tolist()) == best


# ----------------------------------------------------------------------------- beam search against Hugging Face
class _HFStepper:
    """Next-token scores from a Hugging Face seq2seq model, recomputed over the whole prefix."""

    def __init__(self, model, src: torch.Tensor) -> None:
        self.model, self.src, self.prefix = model, src, src.new_empty(src.shape[0], 0)
        self.batch_size, self.device = src.shape[0], src.device

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.prefix = torch.cat([self.prefix, tokens], 1)
        return self.model(input_ids=self.src, decoder_input_ids=self.prefix).logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        self.src, self.prefix, self.batch_size = self.src[index], self.prefix[index], index.shape[0]


def _until_eos(row: list[int]) -> list[int]:
    return row[: row.index(EOS) + 1] if EOS in row else row


@pytest.mark.parametrize(
    ("length_penalty", "early_stopping"),
    [(1.0, True), (0.0, True), (2.0, False), (-1.0, False), (1.0, False), (0.6, True), (0.6, False)],
)
def test_beam_search_matches_hugging_face(length_penalty, early_stopping):
    config = BartConfig(
        vocab_size=40,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    torch.manual_seed(0)
    hf = BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
        hf.final_logits_bias[0, EOS] = 4.0  # EOS often in reach, so finishing and stopping rules matter
    src = torch.randint(3, 40, (12, 7), generator=torch.Generator().manual_seed(0))
    kwargs = dict(num_beams=3, length_penalty=length_penalty, early_stopping=early_stopping)
    with torch.no_grad():
        expected = hf.generate(src, max_new_tokens=10, do_sample=False, **kwargs)[:, 1:]  # drop the start token
    with torch.inference_mode():
        ours = BeamSearch(**kwargs).search(_HFStepper(hf, src), max_new_tokens=10, bos_id=BOS, eos_id=EOS)
    lengths = {len(_until_eos(row)) for row in ours.tolist()}
    assert len(lengths) > 1  # rows end at different steps
    assert [_until_eos(row) for row in ours.tolist()] == [_until_eos(row) for row in expected.tolist()]


class _HFCachedStepper:
    """Next-token scores from a Hugging Face seq2seq model through its own KV cache (encoder run once)."""

    def __init__(self, model, src: torch.Tensor) -> None:
        self.model, self.past = model, None
        self.memory = model.get_encoder()(input_ids=src).last_hidden_state
        self.batch_size, self.device = src.shape[0], src.device

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(
            encoder_outputs=(self.memory,), decoder_input_ids=tokens, past_key_values=self.past, use_cache=True
        )
        self.past = out.past_key_values
        return out.logits[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        self.memory, self.batch_size = self.memory[index], index.shape[0]
        if self.past is not None:
            self.past.reorder_cache(index)


@pytest.mark.parametrize(
    ("size", "batch", "eos_bias"),
    [("tiny", 4, 2.0), ("tiny", 4, 4.0), ("tiny", 1, 4.0), pytest.param("small", 2, 4.0, marks=pytest.mark.slow)],
    ids=["tiny-eos2", "tiny-eos4", "tiny-batch1-eos4", "small-eos4"],
)
def test_beam_search_matches_hugging_face_at_the_bench_shapes(size, batch, eos_bias):
    """The settings `make bench` times (5 beams, length_penalty 1.0, early stopping, 32-token sources) on BART
    at the bench's sizes. Unit-gain random weights make the scores peaked and source-dependent, and the EOS bias
    makes beams end at different steps; at these two biases a wrong length penalty, early-stopping rule or beam
    count gives other sequences (checked when the test was written)."""
    from enhanced_tx.bench.peers import build_bart
    from enhanced_tx.bench.shapes import SHAPES

    torch.manual_seed(0)
    hf = build_bart(SHAPES[size]).model.eval()
    hf.generation_config.update(
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS, forced_eos_token_id=None
    )
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 2:
                p.normal_(0.0, p.shape[1] ** -0.5)
        hf.final_logits_bias[0, EOS] = eos_bias
    src = torch.randint(4, SHAPES[size].vocab, (batch, 32), generator=torch.Generator().manual_seed(0))
    kwargs = dict(num_beams=5, length_penalty=1.0, early_stopping=True)
    with torch.inference_mode():
        expected = hf.generate(src, attention_mask=torch.ones_like(src), max_new_tokens=16, do_sample=False, **kwargs)
        ours = BeamSearch(**kwargs).search(_HFCachedStepper(hf, src), max_new_tokens=16, bos_id=BOS, eos_id=EOS)
    assert [_until_eos(row) for row in ours.tolist()] == [_until_eos(row) for row in expected[:, 1:].tolist()]


@pytest.mark.parametrize("v", [50, 512], ids=["one-topk", "best-blocks-first"])
def test_beam_candidates_are_the_flat_topk(v):
    """Both ways of taking the 2K best of K*V sums give the flat topk's scores, parents and tokens, with
    unreachable (-inf) beams as on the first step."""
    from enhanced_tx.generation.beam_search import _best_candidates

    b, k = 3, 4
    logprobs = torch.randn(b * k, v, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    live = torch.randn(b, k, generator=torch.Generator().manual_seed(1))
    live[0, 1:] = float("-inf")
    flat_scores, flat = (logprobs.view(b, k, v) + live[:, :, None]).view(b, k * v).topk(2 * k, dim=-1)
    scores, parent, token = _best_candidates(logprobs.clone(), live)
    assert torch.equal(scores, flat_scores)
    assert torch.equal(parent, flat // v) and torch.equal(token, flat % v)


# ----------------------------------------------------------------------------- sampler configs
CONF = Path(__file__).resolve().parents[1] / "conf"
SAMPLER_CONFIGS = sorted(p.stem for p in (CONF / "sampler").glob("*.yaml"))


def _compose_sampler(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return instantiate(compose(overrides=list(overrides)).sampler)


def test_the_agreed_sampler_configs_exist():
    assert {"greedy", "sample", "top_k", "top_p", "min_p", "beam"} <= set(SAMPLER_CONFIGS)


@pytest.mark.parametrize("name", SAMPLER_CONFIGS)
def test_every_sampler_config_builds_a_sampler_that_generates(name):
    sampler = _compose_sampler(f"+sampler={name}")
    assert isinstance(sampler, Sampler)
    model = _lively_model()
    src, mask = _sources([9, 5])
    out = _gen(model, src, mask, sampler=sampler, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 6)


def test_command_line_overrides_reach_the_sampler():
    sampler = _compose_sampler(
        "+sampler=top_p", "sampler.temperature=0.3", "sampler.top_k=50", "sampler.repetition_penalty=1.2"
    )
    settings = {type(p).__name__: vars(p) for p in sampler.processors}
    assert settings["Temperature"] == {"temperature": 0.3}
    assert settings["TopK"] == {"k": 50}
    assert settings["TopP"] == {"p": 0.9}  # from top_p.yaml
    assert settings["RepetitionPenalty"] == {"penalty": 1.2}


def test_an_invalid_sampler_value_fails_when_the_config_is_built():
    with pytest.raises(Exception, match=r"top_p must be in \(0, 1\] \(1.0 disables it\), got 1.5") as info:
        _compose_sampler("+sampler=top_p", "sampler.top_p=1.5")
    assert isinstance(info.value.__cause__, ConfigError)  # Hydra wraps it; the entry point can unwrap it


# ----------------------------------------------------------------------------- on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_cuda_greedy_with_cache_equals_greedy_without():
    model = _lively_model().cuda()
    src, mask = (t.cuda() for t in _sources([9, 5, 7]))
    cached = _gen(model, src, mask, max_new_tokens=32)
    assert torch.equal(cached, _gen(model, src, mask, max_new_tokens=32, use_cache=False))


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize(
    "sampler",
    [
        GreedySampler(),
        MultinomialSampler(top_p=0.9, top_k=50, repetition_penalty=1.2, no_repeat_ngram_size=3),
        BeamSearch(num_beams=4),
    ],
    ids=["greedy", "sample", "beam"],
)
def test_cuda_decoding_syncs_the_host_once_per_step(sampler):
    import warnings

    model = _lively_model().cuda()
    src, mask = (t.cuda() for t in _sources([9, 5, 7]))
    kwargs = dict(max_new_tokens=16, sampler=sampler, bos_id=BOS, eos_id=10**6)  # an EOS never generated
    generate(model, src, mask, generator=torch.Generator("cuda").manual_seed(0), **kwargs)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = generate(model, src, mask, generator=torch.Generator("cuda").manual_seed(0), **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert out.shape[1] == 16
    # At least one: the detector sees the per-step EOS check. At most one per step, plus beam search's final trim.
    assert 1 <= len(syncs) <= 16 + 1, [f"{w.filename}:{w.lineno}" for w in syncs]


def test_logits_can_be_masked_in_place_before_backward_with_every_linear_backend():
    src = torch.randint(3, 90, (2, 7))
    for backend in ("auto", "default"):
        model = make_model(vocab_size=97).train()
        model.set_linear_backend(backend)
        logits = model(src, src[:, :5])
        assert logits._base is None  # not a view: in-place edits keep autograd intact
        logits[..., 90:] = float("-inf")  # as HF-style code masks unused ids
        logits.logsumexp(-1).mean().backward()
        assert model.embed.weight.grad is not None and torch.isfinite(model.embed.weight.grad).all()
