"""data=hf: Hugging Face datasets from save_to_disk folders, local files and (offline) hub names."""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from enhanced_tx.data import BPETokenizer, ByteTokenizer, Collator, DataError, HFData, hf_tokenize
from enhanced_tx.data.continuation import ContinuationDataset
from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.hf_load import OFFLINE_HINT
from enhanced_tx.data.objectives import SpanCorruption, add_objective_tokens

CONF = Path(__file__).resolve().parents[1] / "conf"
datasets.disable_progress_bars()


def sentence(i: int) -> str:
    words = ["the", "model", "reads", "a", "source", "and", "writes", "its", "target", "again"]
    return " ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 5)) + f" {i}."


def translation_rows(n: int, start: int = 0) -> dict:
    return {
        "id": list(range(start, start + n)),
        "translation": [{"en": sentence(i), "de": f"satz {i} " + sentence(i + 1)} for i in range(start, start + n)],
    }


@pytest.fixture
def byte_tok():
    return ByteTokenizer().build()


@pytest.fixture
def wmt_like(tmp_path: Path) -> Path:
    """A save_to_disk DatasetDict shaped like WMT (nested translation dicts), train and validation."""
    folder = tmp_path / "wmt_like"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(translation_rows(60)),
            "validation": datasets.Dataset.from_dict(translation_rows(6, 1000)),
        }
    ).save_to_disk(folder)
    return folder


@pytest.fixture
def text_folder(tmp_path: Path) -> Path:
    """One saved Dataset (no splits) with a text field."""
    folder = tmp_path / "text_saved"
    datasets.Dataset.from_dict({"text": [sentence(i) for i in range(120)], "n": list(range(120))}).save_to_disk(folder)
    return folder


def ids(tokenizer, text: str) -> list[int]:
    return encode_texts(tokenizer, [text])[0]


def test_pairs_by_nested_field_names_from_a_saved_folder(wmt_like: Path, byte_tok, tmp_path: Path) -> None:
    data = HFData(
        str(wmt_like),
        source_field="translation.en",
        target_field="translation.de",
        val_split="validation",
        max_tgt_len=12,
    )
    train, val = data.build(byte_tok, tmp_path / "cache")
    assert (len(train), len(val)) == (60, 6)
    rows = translation_rows(60)["translation"]
    for i in (0, 17, 59):
        item = train[i]
        assert item["src"].tolist() == ids(byte_tok, rows[i]["en"])
        assert item["tgt"].tolist() == ids(byte_tok, rows[i]["de"])[:11] + [byte_tok.eos_token_id]  # EOS kept
    assert val[0]["src"].tolist() == ids(byte_tok, sentence(1000))
    assert train.length_parts[3].tolist() == [len(train[3]["src"]), len(train[3]["tgt"])]
    corpus = data.tokenizer_corpus()
    assert isinstance(corpus, types.GeneratorType)  # read row by row, never loaded whole
    assert list(itertools.islice(corpus, 2)) == [rows[0]["en"], rows[0]["de"]]


def test_pairs_from_parquet_hold_out_a_random_fraction(tmp_path: Path, byte_tok) -> None:
    file = tmp_path / "pairs.parquet"
    datasets.Dataset.from_dict({"de": [f"d {i}" for i in range(40)], "en": [f"e {i}" for i in range(40)]}).to_parquet(
        file
    )
    data = HFData("parquet", data_files=str(file), source_field="de", target_field="en", val_fraction=0.25, seed=3)
    train, val = data.build(byte_tok, tmp_path / "cache")
    decoded = {byte_tok.decode(train[i]["src"]) for i in range(len(train))} | {
        byte_tok.decode(val[i]["src"]) for i in range(len(val))
    }
    assert (len(train), len(val)) == (30, 10) and decoded == {f"d {i}" for i in range(40)}
    again = HFData("parquet", data_files=str(file), source_field="de", target_field="en", val_fraction=0.25, seed=3)
    assert [again.build(byte_tok, tmp_path / "cache")[1][i]["src"].tolist() for i in range(10)] == [
        val[i]["src"].tolist() for i in range(10)
    ]


def test_text_field_is_one_stream_of_rows_each_ending_with_eos(text_folder: Path, byte_tok, tmp_path: Path) -> None:
    data = HFData(str(text_folder), text_field="text", src_len=16, tgt_len=8, min_src_len=4, val_fraction=0.1)
    train, val = data.build(byte_tok, tmp_path / "cache")
    stream = [t for i in range(120) for t in [*ids(byte_tok, sentence(i)), byte_tok.eos_token_id]]
    assert isinstance(train, ContinuationDataset)  # the default objective, prefix_lm
    n_train = len(train.tokens)
    assert train.tokens.tolist() == stream[:n_train] and val.tokens.tolist() == stream[n_train:]
    assert len(stream) - n_train == max(int(np.ceil(len(stream) * 0.1)), 24)
    item = train[5]
    assert item["tgt"].tolist() == stream[5 * 8 + 16 : 5 * 8 + 24]  # windows every tgt_len tokens


@pytest.mark.parametrize("builder", ["parquet", "json", "text", "arrow", "csv"])
def test_local_files_through_each_builder(builder: str, tmp_path: Path, byte_tok) -> None:
    texts = [sentence(i) for i in range(30)]
    dataset = datasets.Dataset.from_dict({"text": texts})
    file = tmp_path / f"train.{builder}"
    if builder == "text":
        file.write_text("\n".join(texts) + "\n")
    elif builder == "arrow":
        dataset.save_to_disk(tmp_path / "saved")
        file = next((tmp_path / "saved").glob("*.arrow"))
    else:
        getattr(dataset, f"to_{builder}")(file)
    data = HFData(builder, data_files=str(file), text_field="text", src_len=8, tgt_len=4, min_src_len=2)
    train, val = data.build(byte_tok, tmp_path / "cache")
    tokens = np.concatenate([train.tokens, val.tokens]).tolist()
    assert tokens == [t for s in texts for t in [*ids(byte_tok, s), byte_tok.eos_token_id]]


def test_second_run_reuses_the_map_cache(wmt_like: Path, byte_tok, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = hf_tokenize.encode_texts
    monkeypatch.setattr(hf_tokenize, "encode_texts", lambda tok, texts: calls.append(len(texts)) or real(tok, texts))

    def build(tokenizer):
        data = HFData(
            str(wmt_like), source_field="translation.en", target_field="translation.de", val_split="validation"
        )
        train, _ = data.build(tokenizer, tmp_path / "cache")
        return [train[i]["tgt"].tolist() for i in range(len(train))]

    first = build(byte_tok)
    assert calls and len(list((tmp_path / "cache" / "hf").glob("*.arrow"))) == 2  # train and validation
    calls.clear()
    assert build(ByteTokenizer().build()) == first and calls == []  # same data + tokenizer: no tokenizing
    other = BPETokenizer(vocab_size=300).build(sentence(i) for i in range(60))
    build(other)
    assert calls  # another tokenizer: tokenized again, into another file
    assert len(list((tmp_path / "cache" / "hf").glob("*.arrow"))) == 4


def test_tokenizer_trains_from_the_iterator(text_folder: Path) -> None:
    data = HFData(str(text_folder), text_field="text", tokenizer_rows=50)
    rows = list(data.tokenizer_corpus())
    assert rows == [sentence(i) for i in range(50)]
    tokenizer = BPETokenizer(vocab_size=300).build(data.tokenizer_corpus())
    assert len(ids(tokenizer, sentence(3))) < len(sentence(3))


def stream_batches(data: HFData, tokenizer, batch_size: int = 4):
    train, val = data.build(tokenizer, None)
    return train.batches(Collator(tokenizer.pad_token_id, tokenizer.bos_token_id), batch_size, torch.device("cpu")), val


def same(a, b) -> bool:
    return all(torch.equal(x.src, y.src) and torch.equal(x.labels, y.labels) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("objective", [None, SpanCorruption()], ids=["prefix_lm", "span_corruption"])
def test_streaming_text_resumes_exactly_across_epochs(text_folder: Path, tmp_path: Path, objective) -> None:
    tokenizer = add_objective_tokens(ByteTokenizer().build(), objective)

    def make():
        return HFData(
            str(text_folder),
            text_field="text",
            streaming=True,
            val_rows=10,
            src_len=24,
            tgt_len=16,
            objective=objective,
        )

    straight, val = stream_batches(make(), tokenizer)
    expected = list(itertools.islice(straight, 60))  # the stream holds ~4200 tokens: several epochs
    assert straight.epoch >= 1 and len(val) > 0
    for stop in (1, 7, 33):
        first, _ = stream_batches(make(), tokenizer)
        head = list(itertools.islice(first, stop))
        state = first.state_dict()
        resumed, _ = stream_batches(make(), tokenizer)  # a new process would build everything anew
        resumed.load_state_dict(torch.load(_saved(state, tmp_path), weights_only=True))
        assert same(head + list(itertools.islice(resumed, 60 - stop)), expected)
    # validation is the first val_rows rows; training starts after them
    first_src = expected[0].src[0][expected[0].src_mask[0]].tolist()
    assert not set(map(tuple, [first_src])) & {tuple(ids(tokenizer, sentence(i))) for i in range(10)}


def _saved(state: dict, tmp_path: Path) -> Path:
    """The state through torch.save, as the checkpoint stores it (plain values only)."""
    path = tmp_path / "data_state.pt"
    torch.save(state, path)
    return path


def test_streaming_pairs_from_parquet_resume_exactly(tmp_path: Path, byte_tok) -> None:
    for shard in range(3):  # three files: three shards, the position names one
        rows = translation_rows(15, 100 * shard)
        datasets.Dataset.from_dict(rows).to_parquet(tmp_path / f"part{shard}.parquet")
    files = [str(tmp_path / f"part{shard}.parquet") for shard in range(3)]

    def make():
        return HFData(
            "parquet",
            data_files=files,
            source_field="translation.en",
            target_field="translation.de",
            streaming=True,
            val_rows=5,
        )

    straight, val = stream_batches(make(), byte_tok, batch_size=3)
    expected = list(itertools.islice(straight, 25))  # 40 training rows a pass: two epochs
    assert len(val) == 5 and byte_tok.decode(expected[0].src[0][expected[0].src_mask[0]]) == sentence(5)
    first, _ = stream_batches(make(), byte_tok, batch_size=3)
    head = list(itertools.islice(first, 9))
    assert (
        first.state_dict()["stream"]["stream"]["examples_iterable"]["examples_iterable"]["examples_iterable"][
            "shard_idx"
        ]
        == 2
    )  # row 5 + 27
    resumed, _ = stream_batches(make(), byte_tok, batch_size=3)
    resumed.load_state_dict(first.state_dict())
    assert same(head + list(itertools.islice(resumed, 16)), expected)
    with pytest.raises(DataError, match="resumes with its batch size"):
        stream_batches(make(), byte_tok, batch_size=4)[0].load_state_dict(first.state_dict())


def test_error_unknown_dataset_offline(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as error:
        HFData("someone/no_such_dataset_here", config="de-en", text_field="text").splits()
    message = str(error.value)
    assert "\n" not in message and message.startswith("data.name=someone/no_such_dataset_here data.config=de-en: ")
    assert OFFLINE_HINT in message


def test_error_unknown_config_of_a_local_dataset_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for config in ("en", "de"):
        (repo / config).mkdir(parents=True)
        datasets.Dataset.from_dict({"text": [f"{config} {i}" for i in range(4)]}).to_parquet(
            repo / config / "train.parquet"
        )
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.parquet\n" for c in ("en", "de")
        )
        + "---\n"
    )
    assert len(HFData(str(repo), config="de", text_field="text").splits()[0]) == 4
    with pytest.raises(
        DataError,
        match=r"^data.config=fr does not fit data.name=.*repo: BuilderConfig 'fr' not found. "
        r"Available: \['en', 'de'\]$",
    ):
        HFData(str(repo), config="fr", text_field="text").splits()


def test_error_missing_split_and_field(wmt_like: Path, text_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"^data.split=test is not a split of data.name=.*wmt_like \(splits: train, validation\)$"
    ):
        HFData(str(wmt_like), split="test", text_field="id").splits()
    with pytest.raises(DataError, match=r"^data.val_split=dev is not a split .* \(splits: train, validation\)$"):
        HFData(str(wmt_like), val_split="dev", text_field="id").splits()
    with pytest.raises(
        DataError,
        match=r"^data.target_field=translation.fr: no such field in .* \(fields: id, translation.de, translation.en\); "
        r"set data.target_field=<field name>$",
    ):
        HFData(str(wmt_like), source_field="translation.en", target_field="translation.fr").splits()
    with pytest.raises(DataError, match=r"fields: n, text\)"):
        HFData(str(text_folder), text_field="body", streaming=True).splits()
    with pytest.raises(DataError, match="holds one dataset, not splits; set data.val_split=null"):
        HFData(str(text_folder), text_field="text", val_split="validation").splits()
    with pytest.raises(DataError, match="no such dataset or file|not in the local cache"):
        HFData("parquet", data_files=str(tmp_path / "missing.parquet"), text_field="text").splits()
    with pytest.raises(DataError, match="either data.source_field and data.target_field"):
        HFData(str(wmt_like), source_field="translation.en")


def test_hf_config_composes_and_builds(wmt_like: Path, tmp_path: Path, byte_tok) -> None:
    from .conftest import compose_train

    cfg = compose_train(tmp_path, "data=hf", f"data.name={wmt_like}", "data.source_field=translation.en",
                        "data.target_field=translation.de", "data.val_split=validation")  # fmt: skip
    data = instantiate(cfg.data)
    assert isinstance(data, HFData) and data.cache_dir == str(tmp_path / "cache")
    train, _ = data.build(byte_tok)
    assert len(train) == 60 and (tmp_path / "cache" / "hf").is_dir()
    assert OmegaConf.is_missing(OmegaConf.load(CONF / "data" / "hf.yaml"), "name")  # data.name is required


@pytest.mark.slow  # two short training runs: ~20 s alone, minutes on a busy 2-core machine
def test_trainer_resumes_a_streamed_run_bit_identically(text_folder: Path, tmp_path: Path) -> None:
    """SIGTERM at step 4, resume: the data position comes back from the checkpoint and the weights end equal
    to a straight run's (the resumed run read the same windows)."""
    from functools import partial

    from enhanced_tx.checkpoint import load_checkpoint
    from enhanced_tx.training import Precision, TrainingParts, WarmupCosine
    from enhanced_tx.training.preemption import TrainingInterrupted

    from .conftest import make_model
    from .test_training import SignalAtStep, _params, quiet_trainer

    tokenizer = ByteTokenizer().build()

    def parts(folder: Path, logger=None, seed: int = 0) -> TrainingParts:
        from enhanced_tx.tracking.logger import MetricLogger

        data = HFData(str(text_folder), text_field="text", streaming=True, val_rows=10, src_len=16, tgt_len=16)
        train, val = data.build(tokenizer, tmp_path / "cache")
        collator = Collator(tokenizer.pad_token_id, tokenizer.bos_token_id)
        logger = logger or MetricLogger()
        logger.start(folder)
        return TrainingParts(
            model=make_model("learned", vocab_size=len(tokenizer), d_model=32, seed=seed),
            optimizer_factory=partial(torch.optim.AdamW, lr=1e-3),
            schedule=WarmupCosine(warmup=0.1),
            precision=Precision(),
            train_set=None,
            val_set=val,
            collator=collator,
            logger=logger,
            run_dir=folder,
            device=torch.device("cpu"),
            batches=train.batches(collator, 8, torch.device("cpu")),
        )

    straight = parts(tmp_path / "straight")
    quiet_trainer(max_steps=10, eval_every=5).fit(straight)
    with pytest.raises(TrainingInterrupted):
        quiet_trainer(max_steps=10, eval_every=5).fit(parts(tmp_path / "resumed", logger=SignalAtStep(step=4)))
    saved = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["data"]
    assert saved["stream"]["window"] > 0 and "shard_idx" in str(saved["stream"]["stream"])
    resumed = parts(tmp_path / "resumed", seed=123)
    quiet_trainer(max_steps=10, eval_every=5, resume="auto").fit(resumed)
    a, b = _params(straight.model), _params(resumed.model)
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_run_train_streams_a_saved_dataset(text_folder: Path, tmp_path: Path) -> None:
    """The composition root hands a streamed split to the trainer as its batch source; the checkpoint holds
    the stream position."""
    from enhanced_tx.checkpoint import load_checkpoint
    from enhanced_tx.tasks.train import train

    from .conftest import TINY_TRAIN, compose_train

    cfg = compose_train(
        tmp_path, *TINY_TRAIN, "data=hf", f"data.name={text_folder}", "data.text_field=text", "data.streaming=true",
        "data.val_rows=10", "objective=span_corruption",
    )  # fmt: skip
    assert train(cfg) < 10
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["data"]
    assert state["batch_size"] == 8 and state["stream"]["window"] == 6 * 8  # six steps of eight windows
