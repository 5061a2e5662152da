"""run_generate.py on a pairs run prints only the generated target (a text run keeps prompt + continuation),
decided by the run's saved config; JSONL records carry what made them."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from enhanced_tx.generation.task import continues_prompt, provenance

from .conftest import TINY_TRAIN
from .test_cli import run_cli
from .test_run_warnings import _pairs


@pytest.mark.parametrize(
    "data, continues",
    [
        ({"_target_": "enhanced_tx.data.PairsData"}, False),
        ({"_target_": "enhanced_tx.data.TextData"}, True),
        ({"_target_": "enhanced_tx.data.SampleData"}, True),
        (
            {"_target_": "enhanced_tx.data.HFData", "source_field": "en", "target_field": "de", "text_field": None},
            False,
        ),
        ({"_target_": "enhanced_tx.data.HFData", "text_field": "text"}, True),
        ({"_target_": "os.system"}, True),  # not a class the project ships: never imported
    ],
)
def test_the_runs_data_class_says_whether_output_continues_the_prompt(data, continues):
    assert continues_prompt(OmegaConf.create({"data": data})) is continues


def test_provenance_names_the_run_checkpoint_sampler_settings_and_seed():
    made = provenance("RUN", "RUN/model.safetensors", {"_target_": "a.b.TopP", "top_p": 0.9}, seed=3, max_new_tokens=7)
    assert made == {"run": "RUN", "checkpoint": "RUN/model.safetensors", "sampler": "TopP",
                    "sampler_settings": {"top_p": 0.9}, "seed": 3, "max_new_tokens": 7}  # fmt: skip


@pytest.mark.slow  # trains a tiny pairs run, then generates twice
def test_a_pairs_run_prints_only_its_output_and_records_what_made_it(tmp_path):
    run = tmp_path / "run"
    tiny = [o for o in TINY_TRAIN if not o.startswith(("data.src_len", "data.tgt_len"))]
    pairs = ["data=pairs", f"data.path={_pairs(tmp_path)}", "data.max_src_len=16", "data.max_tgt_len=16"]
    args = [*tiny, *pairs, "trainer.max_steps=4", f"hydra.run.dir={run}"]
    assert run_cli("run_train.py", *args, tmp_path=tmp_path).returncode == 0
    common = [f"run={run}", "sampler=greedy", "max_new_tokens=4", "seed=5"]
    result = run_cli("run_generate.py", *common, "prompt=alpha beta", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.startswith("alpha beta")  # not glued to the prompt
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("alpha beta\ngamma delta\n")
    result = run_cli("run_generate.py", *common, f"prompts_file={prompts}", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (run / "generations" / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["alpha beta", "gamma delta"]
    for row in rows:
        assert row["run"] == str(run) and row["checkpoint"].endswith((".pt", ".safetensors"))
        assert row["sampler"] == "GreedySampler" and row["seed"] == 5 and row["max_new_tokens"] == 4
