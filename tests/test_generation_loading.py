"""Generating from a trained run folder: finding the run, loading every kind of weights file, run_generate."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from enhanced_tx.checkpoint import CheckpointError
from enhanced_tx.data.tokenizers import ByteTokenizer
from enhanced_tx.errors import ConfigError
from enhanced_tx.generation import GreedySampler, MultinomialSampler, generate
from enhanced_tx.generation.loading import find_latest_run, load_run, resolve_run_dir
from enhanced_tx.generation.text import TextStream, decode_rows, encode_prompts
from enhanced_tx.tasks.generate import generate_text
from enhanced_tx.tasks.train import train

from .conftest import CONF_DIR, TINY_TRAIN, compose_train

ROOT = Path(CONF_DIR).parent
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A real (tiny, 6-step) training run folder, as run_train.py writes it."""
    tmp = tmp_path_factory.mktemp("train")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(f"The quick brown fox jumps over the lazy dog {i}." for i in range(300)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(tmp, *TINY_TRAIN, "data=text", f"data.path={corpus}"))
    finally:
        torch.set_num_threads(threads)
    return tmp / "run"


def _compose_generate(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("generate", overrides=list(overrides))


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- loading
def test_every_kind_of_weights_file_loads_the_run(trained_run):
    last = load_run(trained_run, "last")
    assert last.model.vocab_size == len(last.tokenizer) and not last.model.training
    assert last.weights == trained_run / "checkpoints" / "last.pt"
    # model.safetensors is written at the end of training: the same weights as last.pt
    for spec in ("model.safetensors", str(trained_run / "model.safetensors"), "checkpoints/step_6.pt", "auto"):
        other = load_run(trained_run, spec)
        for name, value in _params(other.model).items():
            torch.testing.assert_close(value, _params(last.model)[name], rtol=0, atol=0, msg=f"{spec}: {name}")
    assert load_run(trained_run, "best").weights == trained_run / "checkpoints" / "best.pt"
    fresh = instantiate(last.config.model, vocab_size=len(last.tokenizer))  # what loading must overwrite
    assert not torch.equal(fresh.embed.weight, last.model.embed.weight)


def test_precision_casts_the_weights(trained_run):
    run = load_run(trained_run, "last", dtype=torch.bfloat16)
    assert {p.dtype for p in run.model.parameters()} == {torch.bfloat16}
    src, mask = encode_prompts(run.tokenizer, [PROMPT], run.model.max_seq_len)
    out = generate(run.model, src, mask, max_new_tokens=4, sampler=GreedySampler(), bos_id=1, eos_id=2)
    assert out.shape[0] == 1 and out.shape[1] <= 4


def test_a_missing_checkpoint_is_a_clear_error(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "checkpoints" / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="best.pt does not exist"):
        load_run(copy, "best")


def test_latest_is_the_run_whose_weights_were_written_last(trained_run, tmp_path):
    older, newer = tmp_path / "outputs" / "a", tmp_path / "multirun" / "x" / "0_seed=1"
    for folder in (older, newer):
        shutil.copytree(trained_run, folder)
    unfinished = tmp_path / "outputs" / "b"  # started later, but no weights yet: not a candidate
    unfinished.mkdir(parents=True)
    shutil.copy(trained_run / "config.resolved.yaml", unfinished)
    roots = [tmp_path / "outputs", tmp_path / "multirun"]
    os.utime(older / "checkpoints" / "last.pt", (1e9, 2e9))  # far in the future
    assert find_latest_run(roots) == older
    os.utime(newer / "model.safetensors", (1e9, 3e9))
    assert resolve_run_dir("latest", roots) == newer


def test_run_folder_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="run=latest found no trained run"):
        resolve_run_dir("latest", [tmp_path / "outputs"])
    with pytest.raises(ConfigError, match="is not a training run folder"):
        resolve_run_dir(tmp_path, [])


# ----------------------------------------------------------------------------- the task behind run_generate.py
def test_generate_text_streams_what_it_returns(trained_run, capsys):
    overrides = (f"run={trained_run}", f"prompt={PROMPT}", "max_new_tokens=8", "sampler=sample", "seed=5")
    (text,) = generate_text(_compose_generate(*overrides))
    assert text  # a 6-step model: sampling, not greedy, gives visible text
    assert capsys.readouterr().out == f"{PROMPT}{text}\n"
    # the same as generating by hand from the best checkpoint with the same seed
    run = load_run(trained_run, "best")
    src, mask = encode_prompts(run.tokenizer, [PROMPT], run.model.max_seq_len)
    tokens = generate(
        run.model,
        src,
        mask,
        max_new_tokens=8,
        sampler=MultinomialSampler(),
        bos_id=1,
        eos_id=2,
        generator=torch.Generator().manual_seed(5),
    )
    assert text == decode_rows(run.tokenizer, tokens, eos_id=2)[0]


def test_generate_text_batches_a_list_of_prompts_and_is_seeded(trained_run, capsys):
    overrides = (f"run={trained_run}", f"prompt=[{PROMPT},Lazy dog]", "max_new_tokens=6", "sampler=sample")
    first = generate_text(_compose_generate(*overrides, "seed=3"))
    assert len(first) == 2
    assert generate_text(_compose_generate(*overrides, "seed=3")) == first
    printed = capsys.readouterr().out
    assert f"{PROMPT}{first[0]}" in printed and f"Lazy dog{first[1]}" in printed


def test_prompts_file_writes_jsonl_with_every_return_sequence(trained_run, tmp_path):
    import json

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n\nLazy dog\nA third one\n")
    out = tmp_path / "out.jsonl"
    overrides = (f"run={trained_run}", f"prompts_file={prompts}", f"output_file={out}", "max_new_tokens=5")
    texts = generate_text(_compose_generate(*overrides, "sampler=sample", "num_return_sequences=2", "batch_size=2"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["sequence"]) for r in rows] == [(i, k) for i in range(3) for k in range(2)]
    assert [r["prompt"] for r in rows[::2]] == [PROMPT, "Lazy dog", "A third one"]
    assert [r["text"] for r in rows] == texts
    # batching changes nothing for greedy: each row equals its prompt generated alone
    greedy = generate_text(_compose_generate(*overrides, "sampler=greedy", "batch_size=2"))
    alone = generate_text(
        _compose_generate(f"run={trained_run}", "prompt=Lazy dog", "max_new_tokens=5", "sampler=greedy", "stream=false")
    )
    assert greedy[1] == alone[0]


@pytest.mark.parametrize("sampler", [["sampler=greedy"], ["sampler=beam"], ["sampler=sample", "sampler.temperature=0"]])
def test_several_return_sequences_from_a_deterministic_sampler_are_refused(trained_run, sampler):
    cfg = _compose_generate(f"run={trained_run}", "num_return_sequences=3", *sampler)
    with pytest.raises(ConfigError, match="num_return_sequences=3 with a deterministic sampler .* identical outputs"):
        generate_text(cfg)


def test_a_prompts_file_keeps_each_prompt_as_written(tmp_path):
    from enhanced_tx.generation.prompts import read_prompts_file

    path = tmp_path / "prompts.txt"
    path.write_bytes("\ufeffHello\r\n\r\n  two spaces \r\ncaf\u00e9\u2028x\n".encode())
    assert read_prompts_file(path) == ["Hello", "  two spaces ", "caf\u00e9\u2028x"]
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_prompts_file(path)


def test_missing_or_empty_prompts_file_is_a_clear_error(trained_run, tmp_path):
    with pytest.raises(ConfigError, match="prompts_file=.*does not exist"):
        generate_text(_compose_generate(f"run={trained_run}", f"prompts_file={tmp_path / 'nope.txt'}"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ConfigError, match="holds no prompts"):
        generate_text(_compose_generate(f"run={trained_run}", f"prompts_file={tmp_path / 'empty.txt'}"))


def test_a_prompt_longer_than_the_model_accepts_is_truncated_with_a_warning(trained_run):
    run = load_run(trained_run, "best")
    long_prompt = "x" * (run.model.max_seq_len + 10)  # byte tokenizer: one token a character
    with pytest.warns(UserWarning, match=f"keeping its last {run.model.max_seq_len}"):
        src, mask = encode_prompts(run.tokenizer, [long_prompt], run.model.max_seq_len)
    assert src.shape[1] == run.model.max_seq_len and bool(mask.all())


def test_an_invalid_sampler_value_is_one_config_error(trained_run):
    cfg = _compose_generate(f"run={trained_run}", "sampler=top_p", "sampler.top_p=1.5")
    with pytest.raises(ConfigError, match=r"^sampler: top_p must be in \(0, 1\]"):
        generate_text(cfg)


def test_text_stream_waits_for_whole_characters():
    tokenizer = ByteTokenizer().build()
    ids = tokenizer.encode("né!", add_special_tokens=False)  # é is two bytes: two tokens
    out = io.StringIO()
    stream = TextStream(tokenizer, eos_id=tokenizer.eos_token_id, out=out)
    seen = []
    for step, token in enumerate([*ids, tokenizer.eos_token_id, ids[0]]):
        stream(step, torch.tensor([token]))
        seen.append(out.getvalue())
    assert seen == ["n", "n", "né", "né!", "né!", "né!"]  # nothing after EOS
    stream.finish()
    assert out.getvalue() == "né!\n"


def test_text_stream_prints_undecodable_bytes_at_the_end():
    tokenizer = ByteTokenizer().build()
    out = io.StringIO()
    stream = TextStream(tokenizer, eos_id=tokenizer.eos_token_id, out=out)
    for step, token in enumerate(tokenizer.encode("ab", add_special_tokens=False) + [4 + 0xC3]):  # a lone lead byte
        stream(step, torch.tensor([token]))
    assert out.getvalue() == "ab"
    stream.finish()
    assert out.getvalue() == "ab\ufffd\n"


@pytest.mark.slow
def test_run_generate_prints_a_continuation_and_leaves_no_folder(trained_run, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_generate.py"),
            f"run={trained_run}",
            f"prompt={PROMPT}",
            "max_new_tokens=5",
            "sampler=greedy",
            "checkpoint=model.safetensors",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(PROMPT)
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/, no log file
