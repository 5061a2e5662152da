"""Warnings said once: the data is far smaller than what the run will see, validation loss keeps rising; and
in-training samples of the run's own validation sources, with the generate hint following sample_prompts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from enhanced_tx.training.callbacks.run_warnings import DataSizeWarning, OverfittingWarning, planned_epochs

from .conftest import TINY_TRAIN
from .test_cli import run_cli


def _trainer(**limits):
    settings = dict(batch_size=32, accumulation=1, world_size=1, max_steps=None, epochs=None, budget_config={})
    return SimpleNamespace(**{**settings, **limits})


def _ctx(step=0):
    return SimpleNamespace(is_main=True, state=SimpleNamespace(step=step))


def test_planned_epochs_are_the_smallest_limit_known_in_advance():
    assert planned_epochs(_trainer(max_steps=200), train_items=64, tokens_per_item=None) == 100.0
    assert planned_epochs(_trainer(max_steps=200, epochs=3), 64, None) == 3.0
    assert planned_epochs(_trainer(budget_config={"tokens": 64_000}), 64, tokens_per_item=100.0) == 10.0
    assert planned_epochs(_trainer(budget_config={"minutes": 5}), 64, 100.0) is None  # unknown in advance


def test_the_data_size_warning_comes_once_at_a_fresh_start_when_far_over_the_data(capsys):
    DataSizeWarning(train_items=64, tokens_per_item=None).on_fit_start(_trainer(max_steps=200), _ctx())
    DataSizeWarning(train_items=64, tokens_per_item=None).on_fit_start(_trainer(max_steps=200), _ctx(step=50))
    DataSizeWarning(train_items=6400, tokens_per_item=None).on_fit_start(_trainer(max_steps=200), _ctx())
    DataSizeWarning(train_items=None, tokens_per_item=None).on_fit_start(_trainer(max_steps=200), _ctx())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the run will pass over its training data about 100 times")


def test_overfitting_is_said_once_after_three_rises_in_a_row_and_survives_a_resume(capsys):
    warning = OverfittingWarning(patience=3)
    for step, loss in [(50, 3.0), (100, 2.5), (150, 2.6), (200, 2.55), (250, 2.7), (300, 2.8)]:
        warning.on_evaluate(_ctx(step), {"val/loss": loss})
    assert capsys.readouterr().err == ""  # rises 150, (fall) 200, 250, 300: two in a row only
    resumed = OverfittingWarning(patience=3)
    resumed.load_state_dict(json.loads(json.dumps(warning.state_dict())))
    resumed.on_evaluate(_ctx(350), {"val/loss": 2.9})
    resumed.on_evaluate(_ctx(400), {"val/loss": 3.0})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "risen for 3 evaluations in a row (now 2.9000 at step 350" in lines[0]
    assert "best 2.5000 at step 100" in lines[0]


WORDS = ["alpha", "beta", "gamma", "delta", "chi"]


def _pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"source": f"{WORDS[i % 5]} {WORDS[(i + 1) % 5]}", "target": WORDS[(i + 2) % 5]} for i in range(60)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow  # two training runs (~40 s of CPU)
def test_a_pairs_run_samples_its_own_validation_sources_and_the_hint_follows_sample_prompts(tmp_path):
    tiny = [o for o in TINY_TRAIN if not o.startswith(("data.src_len", "data.tgt_len"))]  # continuation keys
    common = [*tiny, "data=pairs", f"data.path={_pairs(tmp_path)}", "data.max_src_len=16", "data.max_tgt_len=16"]
    result = run_cli("run_train.py", *common, f"hydra.run.dir={tmp_path / 'a'}", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    (table,) = [json.loads(line) for line in (tmp_path / "a" / "tables.jsonl").read_text().splitlines()][:1]
    prompts = [row[0] for row in table["rows"]]
    sources = {f"{a} {b}" for a in WORDS for b in WORDS}
    assert len(prompts) == 3 and set(prompts) <= sources  # validation sources, not an English default
    (hint,) = [line for line in result.stdout.splitlines() if line.startswith("generate: ")]
    assert f"prompt={prompts[0]}" in hint
    assert "warning: the run will pass over its training data" not in result.stderr  # 48 items over ~57

    result = run_cli(
        "run_train.py", *common, "sample_prompts=[beta chi]", "trainer.max_steps=60", "trainer.batch_size=16",
        f"hydra.run.dir={tmp_path / 'b'}",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (hint,) = [line for line in result.stdout.splitlines() if line.startswith("generate: ")]
    assert hint.endswith('"prompt=beta chi"')
    assert "warning: the run will pass over its training data about" in result.stderr  # 960 items over ~57 (17 passes)


def test_validation_prompts_decode_the_first_sources(tmp_path):
    from enhanced_tx.data import ByteTokenizer
    from enhanced_tx.generation.sample_prompts import validation_prompts

    tokenizer = ByteTokenizer().build(["abc"])
    val_set = [{"src": torch.tensor(tokenizer.encode(t, add_special_tokens=False))} for t in ["one", " ", "two", "x"]]
    assert validation_prompts(val_set, tokenizer, count=2) == ["one", "two"]  # blank sources skipped
