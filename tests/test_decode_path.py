"""One decode path: run_generate.py and run_eval.py turn the same generated ids into the same text, also on a
tokenizer whose decode() would "clean up" spaces before punctuation by default."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import enhanced_tx.evaluation.decoding as eval_decoding
import enhanced_tx.tasks.generate as generation_run
from enhanced_tx.generation.loading import load_run
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tasks.evaluate import evaluate
from enhanced_tx.tasks.generate import generate_text

from .conftest import CONF_DIR
from .test_generation_loading import trained_run  # noqa: F401 (the module's tiny trained run)

TEXT = "Hello , world . Is it ?"


def _compose(name, *overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=list(overrides))


@pytest.fixture
def cleaning_run(trained_run):  # noqa: F811
    """The run with its tokenizer set to clean up tokenization spaces when decoding (as many hub ones are)."""
    config = RunFolder(trained_run).tokenizer_dir / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    original = dict(settings)
    settings["clean_up_tokenization_spaces"] = True
    settings["clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"] = True
    config.write_text(json.dumps(settings))
    yield trained_run
    config.write_text(json.dumps(original))


def test_generate_and_eval_print_the_same_text(cleaning_run, tmp_path, monkeypatch):
    tokenizer = load_run(cleaning_run, "last").tokenizer
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) != TEXT  # cleanup would change this text

    def fixed_output(model, src, *args, **kwargs):  # the model "generates" TEXT then EOS for every row
        return torch.tensor([ids + [tokenizer.eos_token_id]] * src.shape[0])

    monkeypatch.setattr(generation_run, "generate", fixed_output)
    monkeypatch.setattr(eval_decoding, "generate", fixed_output)

    generated = generate_text(
        _compose("generate", f"run={cleaning_run}", "checkpoint=last", "prompt=Hi", "stream=false", "max_new_tokens=30")
    )
    pairs = tmp_path / "test.jsonl"
    pairs.write_text(json.dumps({"source": "Hi", "target": TEXT}) + "\n")
    monkeypatch.chdir(tmp_path)
    evaluate(
        _compose(
            "eval", f"run={cleaning_run}", "checkpoint=last", f"data.path={pairs}", "log_to_run=false",
            "progress_bar=false", f"paths.cache_dir={tmp_path / 'cache'}", "name=decode_path",
        )
    )  # fmt: skip
    (row,) = [
        json.loads(line) for line in (RunFolder(cleaning_run).eval_dir / "decode_path.jsonl").read_text().splitlines()
    ]
    assert generated == [TEXT] and row["hypothesis"] == TEXT
