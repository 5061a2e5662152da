"""The real-data bench: its generated pairs, the bucketing it relies on, and the section end to end (no timing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enhanced_tx.bench.__main__ import main
from enhanced_tx.bench.realdata_pairs import LengthSpread, word_tokenizer, write_pairs
from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.sampling import EpochBatchSampler, pack_by_tokens


def _padding(batches, parts: np.ndarray) -> float:
    real = sum(int(parts[b].sum()) for b in batches)
    return 1.0 - real / sum(len(b) * int(parts[b].max(0).sum()) for b in batches)


def test_generated_pairs_follow_the_documented_spread_and_tokenize_one_id_per_word(tmp_path):
    spread = LengthSpread()
    path = write_pairs(tmp_path / "pairs.jsonl", 3000, vocab=512, spread=spread, seed=1)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tokenizer = word_tokenizer(512)
    src = encode_texts(tokenizer, [r["source"] for r in rows])
    expected_src, expected_tgt = spread.draw(3000, np.random.default_rng(1))
    assert [len(ids) for ids in src] == expected_src.tolist()  # one id per word, no unknowns
    assert [len(r["target"].split()) for r in rows] == expected_tgt.tolist()
    assert tokenizer.unk_token_id not in {i for ids in src for i in ids}
    assert expected_src.min() >= 3 and expected_src.max() <= 120 and expected_tgt.max() <= 120
    assert 13 <= np.median(expected_src) <= 15  # the documented median, 14
    assert expected_src.max() > 80  # a long tail


def test_bucketing_by_the_longer_side_pads_less_than_by_the_total():
    src, tgt = LengthSpread().draw(20000, np.random.default_rng(0))
    parts = np.stack([src, tgt + 1], 1)  # + EOS
    sampler = EpochBatchSampler(parts, batch_size=64, max_tokens=2048, seed=0)
    batches = [np.asarray(b) for b in sampler.global_batches(0)]
    assert sorted(np.concatenate(batches).tolist()) == list(range(20000))
    by_total = []  # the previous order: each chunk sorted by source + target
    order = np.random.default_rng([0, 0]).permutation(20000)
    for start in range(0, 20000, 64 * 50):
        part = order[start : start + 64 * 50]
        by_total += pack_by_tokens(part[np.argsort(parts[part].sum(1), kind="stable")], parts, 2048, 64)
    assert _padding(batches, parts) < 0.13 < 0.8 * _padding(by_total, parts)


@pytest.mark.slow  # about 50 s: five models trained for a few seconds each, twice
def test_quick_realdata_section_reports_every_contender(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--dtypes", "fp32", "--sections", "realdata", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vs no padding" in text and "vs padding computed" in text and "real pairs fp32: ours vs BART" in text
    rows = {r["model"]: r for r in json.loads(out.read_text())["realdata"]}
    random, padded = "ours, random batches", "ours, random batches, padding computed"
    assert set(rows) == {"ours", "ours (same shapes, no padding)", "bart", random, padded}
    assert min(rows[random]["padding"], rows[padded]["padding"]) > rows["ours"]["padding"]  # random: more padding
    assert rows["ours (same shapes, no padding)"]["padding"] == 0.0
    assert 0.0 < rows["ours"]["padding"] < rows["bart"]["padding"]  # bucketed batches pad less than random ones
    assert all(r["tokens_per_s"] > 0 and r["steps"] >= 1 for r in rows.values())
    assert np.isfinite(rows["ours"]["loss"]) and np.isfinite(rows["bart"]["loss"])
    assert main(["--from-json", str(out)]) == 0  # the saved run renders again
    assert "Training on real-shaped pairs" in capsys.readouterr().out
