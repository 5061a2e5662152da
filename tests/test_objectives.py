"""Objectives (conf/objective/): span corruption, denoising and prefix LM as pure functions of (seed, index)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerFast

from enhanced_tx.data import ByteTokenizer, DataError, TextData
from enhanced_tx.data.continuation import ContinuationDataset
from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.objectives import (
    MASK,
    SENTINEL,
    Denoising,
    PrefixLM,
    SpanCorruption,
    WindowDataset,
    add_objective_tokens,
    item_rng,
)
from enhanced_tx.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
OBJECTIVES = sorted(p.stem for p in (CONF / "objective").glob("*.yaml"))


def tokenizer_for(*objectives) -> PreTrainedTokenizerFast:
    tokenizer = ByteTokenizer().build()
    for objective in objectives:
        add_objective_tokens(tokenizer, objective)
    return tokenizer


def random_windows(n: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, 260, size=(n, length))


def merge_at_sentinels(src: list[int], tgt: list[int], sentinels: set[int], eos: int) -> list[int]:
    """Reference: put each target span back where its sentinel stands in the input."""
    assert tgt[-1] == eos
    spans: dict[int, list[int]] = {}
    current = None
    for token in tgt[:-1]:
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out: list[int] = []
    for token in src:
        out.extend(spans.pop(token) if token in sentinels else [token])
    assert not spans, "every target span has its sentinel in the input"
    return out


def test_span_corruption_merge_of_input_and_targets_gives_the_original() -> None:
    objective = SpanCorruption()
    tokenizer = tokenizer_for(objective)
    sentinels = set(tokenizer.convert_tokens_to_ids(objective.special_tokens()))
    for src_len in (8, 64, 200):
        transform = objective.bind(tokenizer, src_len, 0, 1)
        for i, window in enumerate(random_windows(50, transform.window, seed=src_len)):
            item = transform(window, item_rng(0, i))
            src, tgt = item["src"].tolist(), item["tgt"].tolist()
            assert len(src) <= src_len and len(tgt) == transform.max_tgt_len  # nothing truncated, T5 sizes
            assert merge_at_sentinels(src, tgt, sentinels, tokenizer.eos_token_id) == window.tolist()
            used = [t for t in src if t in sentinels]
            assert used == tokenizer.convert_tokens_to_ids([SENTINEL.format(k) for k in range(len(used))])


def test_span_corruption_lengths_match_t5() -> None:
    # T5 / nanoT5: inputs of 512 tokens (EOS included) come from 568 raw tokens, targets are 114 long. Our
    # inputs carry no EOS, so data.src_len=511 is the same budget.
    assert SpanCorruption().lengths(511) == (568, 114)
    transform = SpanCorruption().bind(tokenizer_for(SpanCorruption()), 511, 0, 1)
    assert len(transform(np.arange(4, 4 + 568) % 250 + 4, item_rng(0, 0))["src"]) == 511


def test_span_corruption_realised_noise_density_and_span_length() -> None:
    objective = SpanCorruption(noise_density=0.15, mean_noise_span_length=3.0)
    tokenizer = tokenizer_for(objective)
    transform = objective.bind(tokenizer, 128, 0, 1)
    noise = spans = total = 0
    sentinels = set(tokenizer.convert_tokens_to_ids(objective.special_tokens()))
    for i, window in enumerate(random_windows(400, transform.window)):
        tgt = transform(window, item_rng(3, i))["tgt"].tolist()[:-1]
        spans += sum(t in sentinels for t in tgt)
        noise += sum(t not in sentinels for t in tgt)
        total += len(window)
    assert abs(noise / total - 0.15) < 0.01
    assert abs(noise / spans - 3.0) < 0.3


def test_span_lengths_are_random_but_a_function_of_seed_and_index() -> None:
    objective = SpanCorruption()
    transform = objective.bind(tokenizer_for(objective), 64, 0, 1)
    window = random_windows(1, transform.window)[0]
    first = transform(window, item_rng(0, 5))["src"]
    assert torch.equal(first, transform(window, item_rng(0, 5))["src"])
    others = {tuple(transform(window, item_rng(0, i))["src"].tolist()) for i in range(20)}
    assert len(others) > 15


def test_denoising_target_is_the_original_and_spans_cover_the_mask_ratio() -> None:
    objective = Denoising(mask_ratio=0.3, poisson_lambda=3.0)
    tokenizer = tokenizer_for(objective)
    mask_id = tokenizer.convert_tokens_to_ids(MASK)
    transform = objective.bind(tokenizer, 100, 0, 1)
    span_lengths: list[int] = []
    for i, window in enumerate(random_windows(300, 100)):
        item = transform(window, item_rng(1, i))
        src, tgt = item["src"].tolist(), item["tgt"].tolist()
        assert tgt == [*window.tolist(), tokenizer.eos_token_id]
        masked, first = objective.mask(100, item_rng(1, i))
        assert masked.sum() == 30 and src.count(mask_id) == first.sum()
        # each mask stands for one contiguous run of the original: the kept tokens are the unmasked ones
        assert [t for t in src if t != mask_id] == window[~masked].tolist()
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:], 100)
        span_lengths += [int(masked[s:e].sum()) for s, e in zip(starts, ends, strict=True)]
    # Poisson(3) conditioned on >= 1 has mean 3 / (1 - e^-3) = 3.16; trimming the last span lowers it a little
    assert 2.6 < np.mean(span_lengths) < 3.3


def test_prefix_lm_is_todays_continuation(text_file: Path, tmp_path: Path) -> None:
    tokenizer = ByteTokenizer().build()
    default = TextData(path=str(text_file), src_len=16, tgt_len=8)
    explicit = TextData(path=str(text_file), src_len=16, tgt_len=8, objective=PrefixLM())
    (a, _), (b, _) = default.build(tokenizer, tmp_path), explicit.build(tokenizer, tmp_path)
    assert isinstance(a, ContinuationDataset) and len(a) == len(b) > 10
    assert all(torch.equal(a[i]["src"], b[i]["src"]) and torch.equal(a[i]["tgt"], b[i]["tgt"]) for i in range(10))
    # the streaming form of prefix LM makes the same kind of item: target = the last tgt_len tokens
    item = PrefixLM().bind(tokenizer, 16, 8, 4)(np.arange(24), item_rng(0, 0))
    assert item["tgt"].tolist() == list(range(16, 24)) and item["src"].tolist()[-1] == 15


@pytest.mark.parametrize("objective", [SpanCorruption(), Denoising()], ids=["span_corruption", "denoising"])
def test_text_data_items_are_windows_of_the_stream(objective, text_file: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_for(objective)
    train, val = TextData(path=str(text_file), src_len=32, tgt_len=8, objective=objective).build(tokenizer, tmp_path)
    assert isinstance(train, WindowDataset) and len(train) > 100 and len(val) >= 1
    stream = np.asarray(encode_texts(tokenizer, [text_file.read_text()])[0])
    window = train.transform.window
    for i in (0, 7, len(train) - 1):
        item = train[i]
        assert torch.equal(item["src"], train[i]["src"])  # deterministic
        assert len(item["src"]) <= 32 and len(item["tgt"]) <= train.transform.max_tgt_len
        original = stream[i * window : (i + 1) * window]  # stride = window: every token once per epoch
        if isinstance(objective, Denoising):
            assert item["tgt"].tolist()[:-1] == original.tolist()


def test_objective_tokens_are_saved_with_the_tokenizer_and_data_text_stays_text(tmp_path: Path) -> None:
    tokenizer = tokenizer_for(SpanCorruption(num_sentinels=10), Denoising())
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok")
    names = [SENTINEL.format(i) for i in range(10)] + [MASK]
    assert loaded.convert_tokens_to_ids(names) == tokenizer.convert_tokens_to_ids(names) == list(range(260, 271))
    assert len(encode_texts(loaded, ["<extra_id_0>"])[0]) == len("<extra_id_0>")  # user text is never a sentinel
    add_objective_tokens(loaded, SpanCorruption(num_sentinels=10))
    assert len(loaded) == 271  # adding twice adds nothing


def test_objective_errors_are_one_line() -> None:
    with pytest.raises(DataError, match="needs the special token <extra_id_0>"):
        SpanCorruption().bind(ByteTokenizer().build(), 64, 0, 1)
    with pytest.raises(ConfigError, match="num_sentinels=2"):
        SpanCorruption(num_sentinels=2).bind(tokenizer_for(SpanCorruption(num_sentinels=2)), 200, 0, 1)
    with pytest.raises(ConfigError, match=r"objective.noise_density=1.5 must be in \(0, 1\)"):
        SpanCorruption(noise_density=1.5)
    with pytest.raises(ConfigError, match="objective.mask_ratio=0"):
        Denoising(mask_ratio=0)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_configs_build(name: str) -> None:
    path = CONF / "objective" / f"{name}.yaml"
    assert path.read_text().startswith("# ")
    objective = instantiate(OmegaConf.load(path))
    tokenizer = tokenizer_for(objective)
    transform = objective.bind(tokenizer, 32, 16, 4)
    item = transform(np.arange(4, 4 + transform.window), item_rng(0, 0))
    assert set(item) == {"src", "tgt"} and item["src"].dtype == torch.long


def unigram_loss(dataset) -> float:
    """Cross-entropy (nats) of the targets under their own unigram distribution: what a model that ignores
    the input and the history gets at best."""
    counts = Counter(t for i in range(len(dataset)) for t in dataset[i]["tgt"].tolist())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


TRAIN_SHORT = (
    "model.d_model=64",
    "model.n_heads=4",
    "model.n_encoder_layers=1",
    "model.n_decoder_layers=1",
    "model.max_seq_len=128",
    "tokenizer=byte",
    "data.src_len=48",
    "data.tgt_len=16",
    "optimizer.lr=3e-3",
    "trainer.batch_size=16",
    "trainer.eval_every=1000",
    "trainer.eval_batches=4",
    "trainer.log_every=1000",
    "trainer.progress_bar=false",
    "trainer.peak_flops=1e12",
    "trainer.sample_max_new_tokens=4",
    "logger=none",
    "sample_prompts=[]",
)


def train_objective(tmp_path: Path, name: str, steps: int, corpus: Path, *overrides: str) -> tuple[float, float]:
    from enhanced_tx.tasks.train import train

    from .conftest import compose_train

    cfg = compose_train(
        tmp_path,
        *TRAIN_SHORT,
        "data=text",
        f"data.path={corpus}",
        f"objective={name}",
        f"trainer.max_steps={steps}",
        *overrides,
    )
    best = train(cfg)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "run" / "tokenizer")
    data = instantiate(cfg.data)
    _, val = data.build(tokenizer, tmp_path / "cache")
    return best, unigram_loss(val)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 200 kB of the built-in corpus (stdlib docstrings), as a text file."""
    from enhanced_tx.data import load_sample_corpus

    folder = tmp_path_factory.mktemp("objective-corpus")
    path = folder / "docstrings.txt"
    path.write_text(load_sample_corpus(folder / "cache")[:200_000], encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_trains_below_the_unigram_loss(name: str, tmp_path: Path, corpus_file: Path) -> None:
    # ~30 s each on a shared 2-core CPU; the fast variant below trains span corruption only
    settings = ("model.d_model=128", "trainer.batch_size=32", "scheduler.warmup=0.05")
    best, unigram = train_objective(tmp_path, name, 150, corpus_file, *settings)
    assert best < unigram, f"{name}: val loss {best:.3f} not below the unigram loss {unigram:.3f}"


def test_span_corruption_trains_below_the_unigram_loss_fast(tmp_path: Path, corpus_file: Path) -> None:
    best, unigram = train_objective(tmp_path, "span_corruption", 40, corpus_file, "positional=learned")
    assert best < unigram - 0.1, f"val loss {best:.3f} not below the unigram loss {unigram:.3f}"
    saved = PreTrainedTokenizerFast.from_pretrained(tmp_path / "run" / "tokenizer")
    assert saved.convert_tokens_to_ids(SENTINEL.format(0)) == 260  # the run saved its sentinels


def test_prompts_read_objective_tokens_and_outputs_show_them() -> None:
    from enhanced_tx.generation.text import detokenize, encode_prompts

    tokenizer = tokenizer_for(SpanCorruption(num_sentinels=3))
    src, mask = encode_prompts(tokenizer, ["The <extra_id_0> sat on <extra_id_1>.", "</s> stays text"], 64)
    first = src[0][mask[0]].tolist()
    assert first == [*ids(tokenizer, "The "), 260, *ids(tokenizer, " sat on "), 261, *ids(tokenizer, ".")]
    assert src[1][mask[1]].tolist() == ids(tokenizer, "</s> stays text")  # the tokenizer's own specials stay text
    assert detokenize(tokenizer, [*first, tokenizer.eos_token_id]) == "The <extra_id_0> sat on <extra_id_1>."
    assert detokenize(ByteTokenizer().build(), [1, 76, 2]) == "H"  # no objective: pad/bos/eos dropped as before


def ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return encode_texts(tokenizer, [text])[0]


def test_ablation_objective_preset_sweeps_every_objective_at_one_token_budget(tmp_path: Path) -> None:
    from .conftest import compose_train

    cfg = compose_train(tmp_path, "experiment=ablation_objective")
    assert cfg.trainer.max_steps is None and cfg.trainer.budget.tokens == 2.0e6 and cfg.model.d_model == 256
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        swept = compose("train", overrides=["experiment=ablation_objective"], return_hydra_config=True)
    assert sorted(swept.hydra.sweeper.params.objective.split(",")) == OBJECTIVES
    classes = {"prefix_lm": PrefixLM, "span_corruption": SpanCorruption, "denoising": Denoising}
    for name in OBJECTIVES:  # each job's data source gets its objective through ${oc.select:objective}
        job = compose_train(tmp_path, "experiment=ablation_objective", f"objective={name}")
        assert type(instantiate(job.data).objective) is classes[name]
