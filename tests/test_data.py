"""Tests of enhanced_tx.data: corpus, tokenizers, datasets, collation, batch sampling, errors."""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue
from transformers import PreTrainedTokenizerFast

from enhanced_tx.data import (
    IGNORE_INDEX,
    BPETokenizer,
    ByteTokenizer,
    Collator,
    DataError,
    EpochBatchSampler,
    PairsData,
    PretrainedTokenizer,
    SampleData,
    TextData,
    collate,
    load_sample_corpus,
    sample_corpus_path,
)
from enhanced_tx.data import corpus as corpus_module
from enhanced_tx.data import text as text_module
from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.tokenizers import wrap_tokenizer

CONF = Path(__file__).resolve().parents[1] / "conf"
WORDS = [
    "the",
    "a",
    "model",
    "learns",
    "to",
    "read",
    "source",
    "text",
    "and",
    "predict",
    "what",
    "follows",
    "in",
    "the",
    "target",
    "sequence",
]


def make_text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(n_words):
        line.append(rng.choice(WORDS))
        if len(line) == 12:
            lines.append(" ".join(line) + ".")
            line = []
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus built once for the module, in a private cache dir."""
    cache = tmp_path_factory.mktemp("corpus-cache")
    sample_corpus_path(cache)
    return cache


@pytest.fixture(scope="module")
def bpe() -> PreTrainedTokenizerFast:
    return BPETokenizer(vocab_size=300, min_frequency=2).build([make_text(3000, seed=1)])


@pytest.fixture(scope="module")
def byte_tok() -> PreTrainedTokenizerFast:
    return ByteTokenizer().build([])


# ---------------------------------------------------------------- corpus


def test_corpus_is_about_one_megabyte_of_docstrings(corpus_cache: Path) -> None:
    path = sample_corpus_path(corpus_cache)
    assert path.parent == corpus_cache
    assert path.name == f"stdlib-docstrings-py{sys.version_info.major}.{sys.version_info.minor}.txt"
    text = load_sample_corpus(corpus_cache)
    assert 900_000 <= len(text.encode("utf-8")) <= 1_300_000
    assert "Return" in text
    assert [p.name for p in corpus_cache.iterdir()] == [path.name]  # no temp file left behind
    assert "antigravity" not in sys.modules  # read with ast, never imported (importing it opens a browser)


def test_corpus_is_deterministic(corpus_cache: Path) -> None:
    small = corpus_module.build_corpus(max_chars=30_000)
    assert small == corpus_module.build_corpus(max_chars=30_000)
    assert 30_000 <= len(small) < 60_000
    assert load_sample_corpus(corpus_cache).startswith(small.rstrip("\n"))


def test_corpus_second_call_reads_cache(corpus_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = load_sample_corpus(corpus_cache)

    def fail(*args: object, **kwargs: object) -> str:
        raise AssertionError("corpus rebuilt although cached")

    monkeypatch.setattr(corpus_module, "build_corpus", fail)
    assert load_sample_corpus(corpus_cache) == before
    with pytest.raises(AssertionError):
        load_sample_corpus(corpus_cache / "elsewhere")  # proves the patch bites when nothing is cached


def test_corpus_default_cache_dir_from_env(corpus_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENHANCED_TX_CACHE", str(corpus_cache))
    assert sample_corpus_path().parent == corpus_cache


# ---------------------------------------------------------------- tokenizers

ROUND_TRIP = "Héllo wörld!\n\tindented  two spaces\n\n€ 中文 </s> <pad>\r\nend"


def assert_specials(tok: PreTrainedTokenizerFast) -> None:
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)


@pytest.mark.parametrize("which", ["bpe", "byte"])
def test_tokenizer_round_trip_and_save_load(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    tok = request.getfixturevalue("bpe" if which == "bpe" else "byte_tok")
    assert_specials(tok)
    ids = tok.encode("the model reads")
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids  # no BOS/EOS added
    text = "the model reads\nsource text  and predicts"
    assert tok.decode(tok.encode(text)) == text
    tok.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert_specials(loaded)
    assert len(loaded) == len(tok)
    assert loaded.encode(ROUND_TRIP) == tok.encode(ROUND_TRIP)
    assert loaded.decode(loaded.encode(text)) == text


def test_bpe_learns_merges(bpe: PreTrainedTokenizerFast, byte_tok: PreTrainedTokenizerFast) -> None:
    assert len(bpe) == 300
    text = make_text(200, seed=5)
    assert len(bpe.encode(text)) < 0.6 * len(byte_tok.encode(text))


def test_byte_tokenizer_ids_are_bytes(byte_tok: PreTrainedTokenizerFast) -> None:
    assert len(byte_tok) == 260
    text = "Héllo\x00\x7f €\n"
    assert byte_tok.encode(text) == [b + 4 for b in text.encode("utf-8")]
    assert byte_tok.decode(byte_tok.encode(text)) == text


@pytest.mark.parametrize("which", ["bpe", "byte_tok"])
def test_data_encoding_reads_special_strings_as_text(which: str, request: pytest.FixtureRequest) -> None:
    tok = request.getfixturevalue(which)
    text = "a </s> b <s><pad> c"
    assert tok.eos_token_id in tok.encode(text)  # the plain tokenizer call parses specials...
    ids = encode_texts(tok, [text])[0]
    assert not {0, 1, 2, 3} & set(ids)  # ...but data never turns user text into specials
    assert tok.decode(ids) == text


def test_pretrained_from_saved_folder(bpe: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    bpe.save_pretrained(tmp_path / "tok")
    tok = PretrainedTokenizer(str(tmp_path / "tok")).build([])
    assert_specials(tok)
    assert tok.encode(ROUND_TRIP) == bpe.encode(ROUND_TRIP)


def test_pretrained_adds_missing_specials_and_round_trips(tmp_path: Path) -> None:
    base = BPETokenizer(vocab_size=300).build([make_text(500)])
    # A tokenizer with only an EOS (like GPT-2's): no pad, bos, unk.
    bare = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="</s>")
    bare.save_pretrained(tmp_path / "bare")
    tok = PretrainedTokenizer(str(tmp_path / "bare")).build([])
    assert None not in (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id)
    tok.save_pretrained(tmp_path / "again")
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path / "again")
    assert [loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.unk_token_id] == [
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
        tok.unk_token_id,
    ]
    assert loaded.encode(ROUND_TRIP) == tok.encode(ROUND_TRIP)


def test_wrap_tokenizer_has_no_post_processor(byte_tok: PreTrainedTokenizerFast) -> None:
    assert byte_tok("ab")["input_ids"] == [ord("a") + 4, ord("b") + 4]
    assert isinstance(wrap_tokenizer(byte_tok.backend_tokenizer), PreTrainedTokenizerFast)


# ---------------------------------------------------------------- text / continuation


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text(make_text(4000), encoding="utf-8")
    return path


def test_text_windows_are_contiguous(text_file: Path, byte_tok: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    data = TextData(str(text_file), src_len=32, tgt_len=16, min_src_len=4, val_fraction=0.1, seed=3)
    train, val = data.build(byte_tok, tmp_path / "cache")
    raw = text_file.read_bytes()
    assert len(train) > 100 and len(val) >= 1
    for ds in (train, val):
        for i in range(0, len(ds), 7):
            item = ds[i]
            assert item["src"].dtype == torch.long and item["tgt"].dtype == torch.long
            assert 4 <= len(item["src"]) <= 32 and len(item["tgt"]) == 16
            joined = bytes((torch.cat([item["src"], item["tgt"]]) - 4).tolist())
            assert joined in raw  # the target continues the source in the original text
    # Train is the head of the stream, validation the held-out tail, nothing shared.
    n_tokens = len(raw)
    assert len(train.tokens) + len(val.tokens) == n_tokens
    assert bytes((np.asarray(val.tokens, dtype=np.int64) - 4).tolist()) == raw[-len(val.tokens) :]
    assert len(val.tokens) >= 0.1 * n_tokens
    # Targets tile the train stream: every token after the first source is a target once.
    targets = torch.cat([train[i]["tgt"] for i in range(len(train))])
    assert torch.equal(targets, torch.as_tensor(np.asarray(train.tokens[32 : 32 + len(targets)], dtype=np.int64)))


def test_text_prefix_lengths_deterministic_and_varying(
    text_file: Path, byte_tok: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    def src_lengths(seed: int) -> list[int]:
        data = TextData(str(text_file), src_len=32, tgt_len=16, min_src_len=4, seed=seed)
        train, _ = data.build(byte_tok, tmp_path / "cache")
        return [len(train[i]["src"]) for i in range(len(train))]

    a, b, c = src_lengths(0), src_lengths(0), src_lengths(1)
    assert a == b
    assert a != c
    assert min(a) >= 4 and max(a) <= 32 and len(set(a)) > 10
    same = TextData(str(text_file), src_len=32, tgt_len=16, min_src_len=4, seed=0).build(byte_tok, tmp_path)[0]
    assert list(same.lengths) == [n + 16 for n in a]


def test_text_val_path(text_file: Path, byte_tok: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    val_file = tmp_path / "val.txt"
    val_file.write_text(make_text(300, seed=9), encoding="utf-8")
    train, val = TextData(str(text_file), val_path=str(val_file), src_len=16, tgt_len=16).build(byte_tok, tmp_path)
    assert len(train.tokens) == len(text_file.read_bytes())
    assert bytes((np.asarray(val.tokens, dtype=np.int64) - 4).tolist()) == val_file.read_bytes()


def test_token_cache_reused_and_invalidated(
    text_file: Path,
    bpe: PreTrainedTokenizerFast,
    byte_tok: PreTrainedTokenizerFast,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    calls: list[int] = []
    real = text_module.encode_stream

    def counting(tok: PreTrainedTokenizerFast, text: str) -> np.ndarray:
        calls.append(1)
        return real(tok, text)

    monkeypatch.setattr(text_module, "encode_stream", counting)
    data = TextData(str(text_file), src_len=32, tgt_len=32)
    first, _ = data.build(bpe, cache)
    assert len(calls) == 1
    assert first.tokens.dtype == np.uint16
    again, _ = data.build(bpe, cache)
    assert len(calls) == 1  # served from the cache
    assert np.array_equal(first.tokens, again.tokens)
    data.build(byte_tok, cache)  # another tokenizer: another cache entry
    assert len(calls) == 2
    text_file.write_text(make_text(4000, seed=7), encoding="utf-8")  # same size, new content
    changed, _ = data.build(bpe, cache)
    assert len(calls) == 3
    assert not np.array_equal(np.asarray(changed.tokens[:200]), np.asarray(first.tokens[:200]))
    assert len(list((cache / "tokens").glob("*.npy"))) == 3
    assert not list((cache / "tokens").glob(".*"))  # no temp files left


def test_text_tokenizer_corpus_needs_no_tokenizer(text_file: Path) -> None:
    data = TextData(str(text_file), val_fraction=0.5)
    chunks = list(data.tokenizer_corpus())
    joined = "".join(chunks)
    full = text_file.read_text(encoding="utf-8")
    assert full.startswith(joined) and 0.4 * len(full) < len(joined) <= 0.5 * len(full)


def test_bpe_trains_on_text_corpus(text_file: Path, tmp_path: Path) -> None:
    data = TextData(str(text_file), src_len=16, tgt_len=16)
    tok = BPETokenizer(vocab_size=300).build(data.tokenizer_corpus())
    train, _ = data.build(tok, tmp_path)
    item = train[0]
    assert tok.decode(torch.cat([item["src"], item["tgt"]])) in text_file.read_text(encoding="utf-8")


def test_sample_data(corpus_cache: Path, byte_tok: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    data = SampleData(src_len=64, tgt_len=64, cache_dir=str(corpus_cache))
    assert "".join(data.tokenizer_corpus()).strip() in load_sample_corpus(corpus_cache)
    train, val = data.build(byte_tok, tmp_path)
    assert len(train) > 10_000 and len(val) > 100
    assert len(train[0]["tgt"]) == 64


# ---------------------------------------------------------------- pairs


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_pairs_jsonl_custom_fields_and_truncation(tmp_path: Path, byte_tok: PreTrainedTokenizerFast) -> None:
    rows = [{"de": f"quelle {i}", "en": f"target number {i}", "id": i} for i in range(10)]
    rows.append({"de": "x" * 50, "en": "y" * 50})
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    val = write_jsonl(tmp_path / "val.jsonl", rows[:3])
    data = PairsData(str(path), val_path=str(val), source_field="de", target_field="en", max_src_len=8, max_tgt_len=6)
    train, val_ds = data.build(byte_tok, None)
    assert len(train) == 11 and len(val_ds) == 3
    eos = byte_tok.eos_token_id
    for i in range(len(train)):
        item = train[i]
        assert len(item["src"]) <= 8 and len(item["tgt"]) <= 6
        assert item["tgt"][-1] == eos and eos not in item["src"][:-1] and eos not in item["tgt"][:-1]
        assert item["tgt"][0] != byte_tok.bos_token_id  # no BOS in tgt
    long = train[10]
    assert byte_tok.decode(long["src"]) == "x" * 8 and byte_tok.decode(long["tgt"][:-1]) == "y" * 5
    assert byte_tok.decode(train[2]["src"]) == "quelle 2"
    assert list(train.lengths) == [len(train[i]["src"]) + len(train[i]["tgt"]) for i in range(len(train))]


def test_pairs_tsv_and_random_val_split(tmp_path: Path, byte_tok: PreTrainedTokenizerFast) -> None:
    lines = ["source\ttarget"] + [f"src {i}\ttgt {i}" for i in range(20)]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = PairsData(str(path), val_fraction=0.25, seed=1)
    train_pairs, val_pairs = data.split()
    assert len(val_pairs) == 5 and len(train_pairs) == 15  # header skipped
    assert sorted(train_pairs + val_pairs) == sorted((f"src {i}", f"tgt {i}") for i in range(20))
    assert val_pairs != [(f"src {i}", f"tgt {i}") for i in range(15, 20)]  # random, not the tail
    assert PairsData(str(path), val_fraction=0.25, seed=1).split() == (train_pairs, val_pairs)
    train, val = data.build(byte_tok, None)
    assert len(train) == 15 and len(val) == 5
    assert set(data.tokenizer_corpus()) == {t for pair in train_pairs for t in pair}


def test_pairs_json_array_and_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"source": "a b", "target": "c"}, {"source": "d", "target": 5}]), encoding="utf-8")
    assert PairsData(str(path), val_path=str(path)).split()[0] == [("a b", "c"), ("d", "5")]
    txt = tmp_path / "pairs.txt"
    txt.write_text("a\tb\nc\td\n", encoding="utf-8")
    assert len(PairsData(str(txt), format="tsv", val_fraction=0.5).split()[0]) == 1


def test_pairs_skip_bad_lines(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"source": "ok 1", "target": "t"},
            "{not json",
            {"src": "wrong field"},
            {"source": "ok 2", "target": "t"},
            {"source": "ok 3", "target": "t"},
        ],
    )
    with pytest.warns(UserWarning, match=r"skipped 2 bad lines \(first: line 2"):
        train, val = PairsData(str(path), skip_bad_lines=True, val_fraction=0.3).split()
    assert len(train) + len(val) == 3


# ---------------------------------------------------------------- errors


def err(fn) -> str:  # noqa: ANN001 - any callable
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    return message


def test_error_missing_file(tmp_path: Path, byte_tok: PreTrainedTokenizerFast) -> None:
    missing = tmp_path / "nope.txt"
    msg = err(lambda: TextData(str(missing)).build(byte_tok, tmp_path))
    assert msg.startswith(f"data.path={missing} does not exist") and "data.path=/abs/path.txt" in msg
    assert "data.path=" in err(lambda: list(TextData(str(missing)).tokenizer_corpus()))
    assert "is a directory" in err(lambda: TextData(str(tmp_path)).build(byte_tok, tmp_path))


def test_error_missing_val_path(text_file: Path, byte_tok: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    msg = err(lambda: TextData(str(text_file), val_path=str(tmp_path / "v.txt")).build(byte_tok, tmp_path))
    assert msg.startswith("data.val_path=") and "does not exist" in msg


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"abc\x00def", "NUL byte at offset 3"),
        (b"caf\xe9 ok", "byte 0xe9 at offset 3"),
    ],
)
def test_error_bad_text_file(tmp_path: Path, byte_tok: PreTrainedTokenizerFast, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    msg = err(lambda: TextData(str(path)).build(byte_tok, tmp_path))
    assert msg.startswith(f"data.path={path}") and expected in msg
    pairs = tmp_path / "bad.jsonl"
    pairs.write_bytes(content)
    assert expected in err(lambda: PairsData(str(pairs)).split())


def test_error_too_few_tokens(tmp_path: Path, byte_tok: PreTrainedTokenizerFast) -> None:
    path = tmp_path / "short.txt"
    path.write_text("only a few words here\n", encoding="utf-8")
    msg = err(lambda: TextData(str(path), src_len=128, tgt_len=128).build(byte_tok, tmp_path))
    assert "data.src_len" in msg and "data.tgt_len" in msg and "256" in msg
    val = tmp_path / "val.txt"
    val.write_text("tiny\n", encoding="utf-8")
    msg = err(
        lambda: TextData(str(path), val_path=str(val), src_len=4, tgt_len=4, min_src_len=2).build(byte_tok, tmp_path)
    )
    assert msg.startswith("data.val_path=") and "has 5 tokens" in msg
    msg = err(
        lambda: TextData(str(val), val_path=str(path), src_len=4, tgt_len=4, min_src_len=2).build(byte_tok, tmp_path)
    )
    assert msg.startswith("data.path=")


def test_error_bad_config_values(text_file: Path) -> None:
    assert "data.min_src_len" in err(lambda: TextData(str(text_file), src_len=8, min_src_len=9))
    assert "data.val_fraction" in err(lambda: TextData(str(text_file), val_fraction=0.0))
    assert "tokenizer.vocab_size" in err(lambda: BPETokenizer(vocab_size=100))
    assert "data.max_tgt_len" in err(lambda: PairsData(str(text_file), max_tgt_len=1))


def test_error_jsonl_bad_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"source": "a", "target": "b"}, '{"source": "a", "target"'])
    msg = err(lambda: PairsData(str(path)).split())
    assert f"data.path={path} line 2: invalid JSON" in msg and "data.skip_bad_lines=true" in msg


@pytest.mark.parametrize(("field", "key"), [("source", "data.source_field"), ("target", "data.target_field")])
def test_error_jsonl_missing_field(tmp_path: Path, field: str, key: str) -> None:
    row = {"source": "a", "target": "b"}
    del row[field]
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    msg = err(lambda: PairsData(str(path)).split())
    assert f"line 1: no field '{field}'" in msg and f"set {key}=" in msg


def test_error_all_lines_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"src": "a", "tgt": "b"}] * 3)
    msg = err(lambda: PairsData(str(path), skip_bad_lines=True).split())
    assert "no usable" in msg and "data.source_field" in msg


def test_error_tsv_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\nc\td\nonly one column\n", encoding="utf-8")
    msg = err(lambda: PairsData(str(path)).split())
    assert f"data.path={path} line 3:" in msg and "found 1" in msg


def test_error_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,b\n", encoding="utf-8")
    assert "data.format=jsonl" in err(lambda: PairsData(str(path)).split())
    assert "data.format=xml is not one of" in err(lambda: PairsData(str(path), format="xml").split())


def test_error_pairs_too_few(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"source": "a", "target": "b"}])
    assert "data.val_path" in err(lambda: PairsData(str(path)).split())


def test_error_pretrained_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tokenizer"
    msg = err(lambda: PretrainedTokenizer(str(missing)).build([]))
    assert msg.startswith(f"tokenizer.name_or_path={missing}: not a local tokenizer folder")
    assert "save_pretrained" in msg
    (tmp_path / "empty").mkdir()
    assert "tokenizer.name_or_path=" in err(lambda: PretrainedTokenizer(str(tmp_path / "empty")).build([]))


# ---------------------------------------------------------------- collate


def items(*pairs: tuple[list[int], list[int]]) -> list[dict[str, torch.Tensor]]:
    return [{"src": torch.tensor(s), "tgt": torch.tensor(t)} for s, t in pairs]


def test_collate_shapes_masks_labels() -> None:
    batch = collate(items(([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 2])), pad_id=0, bos_id=1)
    assert batch.src.tolist() == [[5, 6, 7], [10, 0, 0]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.labels.tolist() == [[8, 9, IGNORE_INDEX, IGNORE_INDEX], [11, 12, 13, 2]]
    assert batch.tgt_in.tolist() == [[1, 8, 9, 0], [1, 11, 12, 13]]
    assert all(t.dtype == torch.long for t in (batch.src, batch.tgt_in, batch.labels))
    assert batch.src_mask.dtype == torch.bool
    assert isinstance(batch.num_tokens, torch.Tensor) and int(batch.num_tokens) == 3 + 1 + 2 + 4
    assert int(batch.num_tgt_tokens) == 6 and len(batch) == 2
    moved = batch.to("cpu")
    assert torch.equal(moved.labels, batch.labels)


def test_collator_with_dataloader(byte_tok: PreTrainedTokenizerFast, text_file: Path, tmp_path: Path) -> None:
    train, _ = TextData(str(text_file), src_len=16, tgt_len=8).build(byte_tok, tmp_path)
    collator = pickle.loads(pickle.dumps(Collator(byte_tok.pad_token_id, byte_tok.bos_token_id)))
    sampler = EpochBatchSampler(train.lengths, batch_size=4, seed=0)
    loader = torch.utils.data.DataLoader(train, batch_sampler=sampler, collate_fn=collator)
    batches = list(loader)
    assert len(batches) == len(sampler) == len(loader)
    first = batches[0]
    assert first.tgt_in.shape == (4, 8) and (first.tgt_in[:, 0] == byte_tok.bos_token_id).all()
    assert torch.equal(first.tgt_in[:, 1:], first.labels[:, :-1])


# ---------------------------------------------------------------- sampling


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def test_sampler_deterministic_and_covering() -> None:
    a = list(EpochBatchSampler(103, batch_size=10, seed=4, epoch=2))
    assert a == list(EpochBatchSampler(103, batch_size=10, seed=4, epoch=2))
    assert a != list(EpochBatchSampler(103, batch_size=10, seed=4, epoch=3))
    assert a != list(EpochBatchSampler(103, batch_size=10, seed=5, epoch=2))
    assert sorted(flat(a)) == list(range(103)) and len(a) == 11
    dropped = EpochBatchSampler(103, batch_size=10, seed=4, drop_last=True)
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)
    assert list(EpochBatchSampler(5, batch_size=2, seed=0, shuffle=False)) == [[0, 1], [2, 3], [4]]


def test_sampler_set_epoch() -> None:
    sampler = EpochBatchSampler(50, batch_size=8, seed=0, start_batch=3)
    assert len(sampler) == 4
    sampler.set_epoch(1)
    assert list(sampler) == list(EpochBatchSampler(50, batch_size=8, seed=0, epoch=1)) and len(sampler) == 7


LENGTHS = np.random.default_rng(0).integers(1, 200, size=997)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lengths_or_n": 997},
        {"lengths_or_n": LENGTHS, "bucket_size_multiplier": 5},
        {"lengths_or_n": LENGTHS, "max_tokens": 2000},
    ],
    ids=["plain", "bucketed", "max_tokens"],
)
def test_sampler_resume_equals_tail(kwargs: dict) -> None:
    full = list(EpochBatchSampler(batch_size=16, seed=7, epoch=1, **kwargs))
    assert sorted(flat(full)) == list(range(997))
    for k in (0, 1, 5, len(full) - 1, len(full)):
        resumed = EpochBatchSampler(batch_size=16, seed=7, epoch=1, start_batch=k, **kwargs)
        assert list(resumed) == full[k:] and len(resumed) == len(full) - k


def test_sampler_rank_sharding() -> None:
    world = 3
    full = list(EpochBatchSampler(960, batch_size=10, seed=1))  # 96 batches: divisible by 3
    shards = [list(EpochBatchSampler(960, batch_size=10, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert [len(s) for s in shards] == [32, 32, 32]
    seen = [flat(s) for s in shards]
    assert sorted(sum(seen, [])) == list(range(960))  # disjoint and covering
    # Global order is independent of world size: interleaving ranks gives the single-process order.
    assert [shards[k % world][k // world] for k in range(96)] == full
    # Resume at another world size: 2 ranks after 10 steps each = 20 global batches = start_batch 20 for 1 rank.
    assert list(EpochBatchSampler(960, batch_size=10, seed=1, start_batch=20)) == full[20:]


def test_sampler_rank_sharding_uneven() -> None:
    shards = [list(EpochBatchSampler(95, batch_size=10, seed=1, rank=r, world_size=4)) for r in range(4)]
    assert {len(s) for s in shards} == {3}  # 10 batches padded to 12: every rank steps the same count
    assert set(sum((flat(s) for s in shards), [])) == set(range(95))
    dropped = [
        list(EpochBatchSampler(95, batch_size=10, seed=1, rank=r, world_size=4, drop_last=True)) for r in range(4)
    ]
    assert {len(s) for s in dropped} == {2}
    indices = sum((flat(s) for s in dropped), [])
    assert len(indices) == len(set(indices)) == 80


def test_sampler_rank_validation() -> None:
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, batch_size=2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="lengths"):
        EpochBatchSampler(10, batch_size=2, max_tokens=100)


def padding(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) - int(lengths[b].sum()) for b in batches)


def test_sampler_bucketing_reduces_padding() -> None:
    plain = list(EpochBatchSampler(997, batch_size=16, seed=0))
    bucketed = list(EpochBatchSampler(LENGTHS, batch_size=16, seed=0, bucket_size_multiplier=20))
    assert sorted(flat(bucketed)) == list(range(997))
    assert padding(bucketed, LENGTHS) < 0.3 * padding(plain, LENGTHS)
    assert [len(b) for b in bucketed].count(16) == 62  # batches stay full size
    # Batch order is shuffled, not sorted by length.
    maxima = [int(LENGTHS[b].max()) for b in bucketed]
    assert maxima != sorted(maxima)


def two_part_padding(batches: list[list[int]], parts: np.ndarray) -> float:
    real = sum(int(parts[b].sum()) for b in batches)
    return 1 - real / sum(len(b) * int(parts[b].max(0).sum()) for b in batches)


def test_two_part_bucketing_pads_less_than_sorting_by_the_total_or_the_longer_part() -> None:
    # Translation-like pairs: the target is the source length give or take a quarter.
    rng = np.random.default_rng(0)
    src = np.clip(np.rint(np.exp(rng.normal(np.log(14), 0.75, 5000))), 3, 120).astype(np.int64)
    tgt = np.clip(np.rint(src * np.exp(rng.normal(0, 0.25, 5000))), 3, 120).astype(np.int64)
    parts = np.stack([src, tgt], 1)
    batches = list(EpochBatchSampler(parts, batch_size=32, seed=0, bucket_size_multiplier=200))  # one pool
    assert sorted(flat(batches)) == list(range(5000))
    order = rng.permutation(5000)

    def sorted_by(key: np.ndarray) -> list[np.ndarray]:
        pool = order[np.argsort(key[order], kind="stable")]
        return [pool[i : i + 32] for i in range(0, len(pool), 32)]

    total = parts.sum(1)
    padding = two_part_padding(batches, parts)
    assert padding < 0.5 * two_part_padding(sorted_by(total), parts)
    assert padding < 0.9 * two_part_padding(sorted_by(parts.max(1) * 1000 + total), parts)


def test_sampler_max_tokens() -> None:
    sampler = EpochBatchSampler(LENGTHS, batch_size=64, seed=0, max_tokens=1000)
    batches = list(sampler)
    assert sorted(flat(batches)) == list(range(997))
    for b in batches:
        assert len(b) <= 64
        assert len(b) == 1 or len(b) * int(LENGTHS[b].max()) <= 1000
    assert len({len(b) for b in batches}) > 3  # short items batch together, long ones alone-ish


def test_sampler_max_tokens_bounds_the_padded_size_when_source_and_target_vary_independently() -> None:
    rng = np.random.default_rng(1)
    parts = rng.integers(1, 60, size=(1000, 2))  # (source, target) lengths, unrelated to each other
    batches = list(EpochBatchSampler(parts, batch_size=64, seed=0, max_tokens=500))
    assert sorted(flat(batches)) == list(range(1000))
    for b in batches:
        assert len(b) == 1 or len(b) * int(parts[b].max(0).sum()) <= 500  # padded separately: sum of maxima


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "path",
    sorted((CONF / "data").glob("*.yaml")) + sorted((CONF / "tokenizer").glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_config_files(path: Path, tmp_path: Path, text_file: Path, bpe: PreTrainedTokenizerFast) -> None:
    assert path.read_text().startswith("# ")  # a comment header (no @package: plain groups)
    cfg = OmegaConf.load(path)
    cfg.pop("defaults", None)  # a group's own defaults list (pairs selects the residual) composes under Hydra only
    if cfg.get("path") == "???" or cfg.get("name_or_path") == "???":
        with pytest.raises(MissingMandatoryValue):
            instantiate(cfg)
    overrides = {
        "text.yaml": {"path": str(text_file)},
        "pairs.yaml": {"path": str(text_file), "format": "tsv"},
        "sample.yaml": {"cache_dir": str(tmp_path / "cache")},  # ${paths.cache_dir} in the composed config
        "pretrained.yaml": {"name_or_path": str(tmp_path / "tok")},
        "hf.yaml": {"name": str(tmp_path / "saved"), "text_field": "text", "cache_dir": str(tmp_path / "cache")},
    }
    bpe.save_pretrained(tmp_path / "tok")
    if "objective" in cfg:  # ${oc.select:objective,null} names the top-level group: itself when loaded alone
        cfg.objective = None
    obj = instantiate(OmegaConf.merge(cfg, overrides.get(path.name, {})))
    assert hasattr(obj, "build")
    if path.parent.name == "data":
        assert hasattr(obj, "tokenizer_corpus")


def test_default_sample_config_values() -> None:
    cfg = OmegaConf.load(CONF / "data" / "sample.yaml")
    assert (cfg.src_len, cfg.tgt_len) == (64, 64)  # README: the default run trains on 64 + 64-token windows
    assert OmegaConf.load(CONF / "tokenizer" / "bpe.yaml").vocab_size == 8192


def test_groups_compose_under_data_and_tokenizer(text_file: Path) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+data=text", f"data.path={text_file}", "+tokenizer=byte"])
    assert cfg.data._target_ == "enhanced_tx.data.TextData" and cfg.data.path == str(text_file)
    assert cfg.tokenizer._target_ == "enhanced_tx.data.ByteTokenizer"
    assert isinstance(instantiate(cfg.data), TextData)


def test_cache_files_follow_the_umask_so_a_shared_cache_stays_readable(tmp_path):
    from enhanced_tx.data.cache import atomic_write

    previous = os.umask(0o002)
    try:
        target = tmp_path / "shared" / "tokens.bin"
        atomic_write(target, lambda tmp: tmp.write_bytes(b"abc"))
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"abc" and (target.stat().st_mode & 0o777) == 0o664


def test_the_sample_corpus_is_cached_under_paths_cache_dir(tmp_path):
    from .conftest import compose_train

    cfg = compose_train(tmp_path, "data=sample")
    assert cfg.data.cache_dir == cfg.paths.cache_dir == str(tmp_path / "cache")


def test_a_tsv_header_after_leading_blank_lines_is_still_a_header() -> None:
    from enhanced_tx.data.pairs_format import read_tsv

    rows = list(read_tsv("\n\r\nsource\ttarget\nhello\tworld\nsource\ttarget\n", "source", "target"))
    assert rows == [("hello", "world"), ("source", "target")]  # only the first line is a header
