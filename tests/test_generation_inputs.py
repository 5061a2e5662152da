"""run_generate.py's settings are checked before any work, and its results are written as they come."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import enhanced_tx.tasks.generate as generation_run
from enhanced_tx.errors import ConfigError
from enhanced_tx.tasks.generate import generate_text

from .conftest import CONF_DIR
from .test_trust import run_folder  # noqa: F401 (a fixture: a run folder without training)


def _compose(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("generate", overrides=["device=cpu", "sampler=greedy", "max_new_tokens=3", *overrides])


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if the model is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(generation_run, "load_run", refuse)


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("The quick\nbrown fox\njumps over\n")
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_return_sequences", 0), ("num_return_sequences", -1), ("batch_size", 0), ("batch_size", -2)]
    + [("max_new_tokens", 0), ("max_new_tokens", -5), ("batch_size", 1.5)],
)
def test_counts_below_one_are_errors_before_loading_never_a_default(tmp_path, no_loading, key, value):
    cfg = _compose(f"run={tmp_path / 'not_a_run'}", f"{key}={value}")
    with pytest.raises(ConfigError, match=rf"^{key}={value} must be a whole number >= 1"):
        generate_text(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["compile=maybe"], "compile='maybe' must be true, false"), (["compile=1"], "compile=1 must be true, false")]
    + [(["use_cache=yes"], "use_cache='yes' must be true, false")]
    + [(["compile=true", "use_cache=false"], "compile=true needs use_cache=true")],
)
def test_a_compile_setting_that_cannot_work_is_an_error_before_loading(tmp_path, no_loading, overrides, message):
    cfg = _compose(f"run={tmp_path / 'not_a_run'}", *overrides)
    with pytest.raises(ConfigError, match=rf"^{message}"):
        generate_text(cfg)


@pytest.mark.parametrize("use_cache", ["true", "false"])
def test_more_new_tokens_than_the_model_decodes_fail_before_generating(run_folder, monkeypatch, use_cache):  # noqa: F811
    monkeypatch.setattr(generation_run, "generate", lambda *a, **k: pytest.fail("generation started"))
    cfg = _compose(f"run={run_folder}", "checkpoint=model.safetensors", "max_new_tokens=65", f"use_cache={use_cache}")
    with pytest.raises(ConfigError, match="max_new_tokens=65 exceeds model.max_seq_len=64"):
        generate_text(cfg)


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: /sys refuses it too)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        open("/sys/enhanced_tx_probe.jsonl", "w").close()  # noqa: SIM115
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here refuses writes to root")


def test_where_results_go_is_checked_before_loading(tmp_path, prompts, no_loading):
    (tmp_path / "a_file").write_text("x")
    cases = {
        tmp_path: "is a folder; pass a file path",
        tmp_path / "a_file" / "out.jsonl": "cannot be written",
        _read_only_folder(tmp_path) / "out.jsonl": "cannot be written",
    }
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.resolved.yaml").write_text("model: {}\n")
    for output, why in cases.items():
        cfg = _compose(f"run={tmp_path / 'run'}", f"prompts_file={prompts}", f"output_file={output}")
        with pytest.raises(ConfigError, match=rf"^output_file={output} {why}") as refused:
            generate_text(cfg)
        assert "\n" not in str(refused.value)


def test_a_killed_generation_keeps_the_batches_it_finished(run_folder, tmp_path, prompts, monkeypatch):  # noqa: F811
    real, calls = generation_run.generate, []

    def killed_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a signal would stop it
        return real(*args, **kwargs)

    monkeypatch.setattr(generation_run, "generate", killed_on_the_third_batch)
    output = tmp_path / "out.jsonl"
    cfg = _compose(
        f"run={run_folder}",
        "checkpoint=model.safetensors",
        f"prompts_file={prompts}",
        f"output_file={output}",
        "batch_size=1",
    )
    with pytest.raises(KeyboardInterrupt):
        generate_text(cfg)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["index"], r["prompt"]) for r in rows] == [(0, "The quick"), (1, "brown fox")]


def test_a_failed_load_leaves_an_existing_results_file_as_it_was(tmp_path, prompts):
    output = tmp_path / "out.jsonl"
    output.write_text('{"index": 0}\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.resolved.yaml").write_text("model: {}\n")
    cfg = _compose(f"run={tmp_path / 'run'}", f"prompts_file={prompts}", f"output_file={output}")
    with pytest.raises(Exception, match="best.pt|checkpoint"):
        generate_text(cfg)
    assert output.read_text() == '{"index": 0}\n'


@pytest.mark.slow
def test_compile_true_generates_the_eager_text_and_says_it_compiles(run_folder, capsys):  # noqa: F811
    """run_generate.py compile=true end to end (a ~20 s compile): the same text as compile=false."""
    import torch._dynamo

    torch._dynamo.reset()  # a fresh compile: earlier tests' graphs count against dynamo's 8-graph limit
    overrides = (f"run={run_folder}", "checkpoint=model.safetensors", "max_new_tokens=6", "stream=false")
    eager = generate_text(_compose(*overrides))
    capsys.readouterr()
    assert generate_text(_compose(*overrides, "compile=true")) == eager
    assert "compile=true: the decode step compiles for each new batch size" in capsys.readouterr().err
