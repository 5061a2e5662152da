"""data.source_markers: BOS/EOS around pairs sources, the same in training, evaluation and generation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from enhanced_tx.data import ByteTokenizer, PairsData
from enhanced_tx.data.source_markers import mark_source, run_source_markers
from enhanced_tx.errors import ConfigError
from enhanced_tx.evaluation import translation
from enhanced_tx.evaluation.decoding import Decoded
from enhanced_tx.generation.samplers import GreedySampler
from enhanced_tx.generation.text import encode_prompts

BOS, EOS = 1, 2


@pytest.mark.parametrize(
    "markers, max_len, keep_end, expected",
    [
        ("none", 9, False, [5, 6, 7, 8]),
        ("eos", 9, False, [5, 6, 7, 8, EOS]),
        ("bos_eos", 9, False, [BOS, 5, 6, 7, 8, EOS]),
        ("bos_eos", 4, False, [BOS, 5, 6, EOS]),  # the text is cut, the markers stay
        ("bos_eos", 4, True, [BOS, 7, 8, EOS]),  # a prompt keeps its end
        ("eos", 1, False, [EOS]),
    ],
)
def test_mark_source(markers, max_len, keep_end, expected):
    assert mark_source([5, 6, 7, 8], markers, BOS, EOS, max_len, keep_end) == expected


def test_unknown_markers_are_a_one_line_error_naming_the_choices(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.source_markers='both' must be one of none, eos, bos_eos"):
        PairsData(str(tmp_path / "x.jsonl"), source_markers="both")


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"source": f"source text {i}", "target": f"target {i}"} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_training_sources_and_generation_prompts_are_encoded_alike(tmp_path: Path):
    tokenizer = ByteTokenizer().build([])
    path = _pairs(tmp_path)
    plain, _ = PairsData(str(path), val_path=str(path), max_src_len=10).build(tokenizer)
    marked, _ = PairsData(str(path), val_path=str(path), max_src_len=10, source_markers="bos_eos").build(tokenizer)
    whole, _ = PairsData(str(path), val_path=str(path), max_src_len=64, source_markers="bos_eos").build(tokenizer)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for i in range(len(marked)):
        src = marked[i]["src"].tolist()
        assert len(src) == 10 and src[0] == bos and src[-1] == eos
        assert src[1:-1] == plain[i]["src"].tolist()[:8]  # the same text tokens, cut to make room
        prompt, mask = encode_prompts(tokenizer, [f"source text {i}"], 64, "bos_eos")
        assert prompt[0][mask[0]].tolist() == whole[i]["src"].tolist()  # generation sees what training saw
    assert bos not in plain[0]["src"].tolist() and eos not in plain[0]["src"].tolist()


def test_a_run_is_evaluated_with_the_markers_it_was_trained_with(tmp_path: Path, monkeypatch):
    assert run_source_markers(OmegaConf.create({"data": {"path": "x"}})) == "none"  # runs before the option
    assert run_source_markers(OmegaConf.create({"data": {"source_markers": "eos"}})) == "eos"
    tokenizer = ByteTokenizer().build([])
    seen = []

    def fake_decode(model, sources, **kwargs):
        seen.extend(s.tolist() for s in sources)
        return Decoded(token_ids=[[] for _ in sources], generated_tokens=0, seconds=1.0)

    monkeypatch.setattr(translation, "decode_sources", fake_decode)
    model = SimpleNamespace(max_seq_len=64)  # decoding is faked: only the sources matter
    for markers in ("none", "bos_eos"):
        seen.clear()
        translation.evaluate_translation(
            model, tokenizer, [("ab", "x")], sampler=GreedySampler(), max_src_len=8, max_new_tokens=2,
            batch_size=4, device=torch.device("cpu"), source_markers=markers,
        )  # fmt: skip
        text = tokenizer.encode("ab", add_special_tokens=False)
        expected = text if markers == "none" else [tokenizer.bos_token_id, *text, tokenizer.eos_token_id]
        assert seen == [expected]
