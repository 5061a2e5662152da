"""A run folder is untrusted input: its config builds only what the project ships, its files choose no code,
and loading from it is local only."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerFast

from enhanced_tx.checkpoint import save_checkpoint, save_model_weights_only
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.tokenizers import ByteTokenizer, load_saved_tokenizer
from enhanced_tx.evaluation.records import checkpoint_info
from enhanced_tx.evaluation.tracking import log_to_run
from enhanced_tx.generation.loading import load_run
from enhanced_tx.training.convert import convert
from enhanced_tx.training.warm_start import warm_start
from enhanced_tx.trusted_targets import (
    CONF_DIR,
    UntrustedConfig,
    admitted,
    check_trusted_targets,
    read_saved_config,
    shipped_targets,
)

from .conftest import TINY_TRAIN, compose_train

CALLS: list[tuple] = []  # what record_call saw: any entry means a saved file chose code that ran


def record_call(*args, **kwargs):
    CALLS.append((args, kwargs))
    return torch.nn.Identity()


RECORD = f"{__name__}.record_call"


@pytest.fixture(autouse=True)
def _no_calls():
    CALLS.clear()
    yield
    assert not CALLS, f"a target named by a run folder was called: {CALLS}"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder as run_train.py leaves it (resolved config, tokenizer, weights), without training."""
    tmp = tmp_path_factory.mktemp("trust")
    cfg = compose_train(tmp, *TINY_TRAIN)
    run = tmp / "run"
    tokenizer = ByteTokenizer().build()
    tokenizer.save_pretrained(str(run / "tokenizer"))
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), run / "config.resolved.yaml")
    model = instantiate(cfg.model, vocab_size=len(tokenizer))
    save_model_weights_only(model, run / "model.safetensors")
    return run


def _crafted(run_folder: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run whose config.resolved.yaml `edit(config_dict)` rewrote."""
    copy = tmp_path / "crafted"
    shutil.copytree(run_folder, copy)
    config = yaml.safe_load((copy / "config.resolved.yaml").read_text())
    edit(config)
    (copy / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    return copy


def _set(path: str, value):
    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


# ----------------------------------------------------------------------------- the rule
def test_the_shipped_run_config_is_trusted_whole(run_folder):
    config = read_saved_config(run_folder / "config.resolved.yaml")
    check_trusted_targets(config, "run")  # every key, not only the model: the rule covers every group
    assert ("enhanced_tx.model.norm.RMSNorm", True) in shipped_targets()["model.norm"]


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_set("model._target_", RECORD), f"model._target_={RECORD}"),
        (_set("model.norm._target_", RECORD), f"model.norm._target_={RECORD}"),
        (_set("model.norm._target_", "builtins.exec"), "model.norm._target_=builtins.exec"),
        # a shipped class at another key: LayerNorm is a norm, not a positional scheme
        (_set("model.positional._target_", "enhanced_tx.model.norm.LayerNorm"), "model.positional._target_="),
        (_set("model.positional._partial_", False), "model.positional._target_="),  # shipped only as _partial_
        (_set("model.extra", {"_target_": RECORD}), f"model.extra._target_={RECORD}"),
        (_set("model._args_", [{"_target_": RECORD}]), f"model._args_.0._target_={RECORD}"),
        (_set("model.feedforward", {"_partial_": True}), "model.feedforward._target_=None (_partial_)"),
    ],
)
def test_a_foreign_target_in_a_run_config_is_refused_before_anything_is_called(run_folder, tmp_path, edit, named):
    crafted = _crafted(run_folder, tmp_path, edit)
    with pytest.raises(UntrustedConfig, match="ships") as refused:
        load_run(crafted, "model.safetensors")
    message = str(refused.value)
    assert named in message and "config.resolved.yaml" in message and "\n" not in message


def test_interpolations_and_python_tags_in_a_saved_config_are_refused(run_folder, tmp_path):
    crafted = _crafted(run_folder, tmp_path, _set("model.d_model", "${oc.env:HOME}"))
    with pytest.raises(UntrustedConfig, match=r"model.d_model=\$\{oc.env:HOME\} is an interpolation"):
        load_run(crafted, "model.safetensors")
    tagged = crafted / "config.resolved.yaml"
    tagged.write_text(f"model: !!python/object/apply:{RECORD} [1]\n")
    with pytest.raises(UntrustedConfig, match="config.resolved.yaml is not a readable config"):
        load_run(crafted, "model.safetensors")


def test_a_new_option_is_admitted_by_its_yaml_file_alone(tmp_path):
    """How other engineers add attention variants, positional schemes, objectives: a class + a YAML file."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    config = {
        "model": {"_target_": "enhanced_tx.model.EncoderDecoder", "norm": {"_target_": RECORD, "_partial_": True}}
    }
    with pytest.raises(UntrustedConfig):
        check_trusted_targets(config, "run", conf_dir=conf)
    (conf / "norm" / "mine.yaml").write_text(f"# @package model.norm\n_target_: {RECORD}\n_partial_: true\n")
    shipped_targets.cache_clear()
    try:
        check_trusted_targets(config, "run", conf_dir=conf)
    finally:
        shipped_targets.cache_clear()


def test_a_class_admitted_in_code_is_trusted_only_inside_its_block():
    config = {"logger": {"_target_": RECORD}}
    with admitted("logger", RECORD):
        check_trusted_targets(config, "run")
        with pytest.raises(UntrustedConfig):  # at its key only
            check_trusted_targets({"model": {"_target_": RECORD}}, "run")
    with pytest.raises(UntrustedConfig):
        check_trusted_targets(config, "run")


def test_evaluation_conversion_and_logging_refuse_a_foreign_target_too(run_folder, tmp_path):
    crafted = _crafted(run_folder, tmp_path, _set("model.norm._target_", RECORD))
    save_checkpoint({"model": {}, "step": 1}, crafted / "checkpoints" / "best.pt")
    with pytest.raises(UntrustedConfig, match="model.norm._target_"):
        convert(crafted, "best")
    config = read_saved_config(crafted / "config.resolved.yaml")
    config.logger = {"_target_": RECORD}
    with pytest.raises(UntrustedConfig, match=f"logger._target_={RECORD}"):
        log_to_run(config, crafted, resume_id=None, prefix="eval/x", metrics={}, summary={}, step=0)


def test_a_run_id_read_back_from_a_checkpoint_must_be_a_plain_id(run_folder, tmp_path):
    save_checkpoint({"step": 3, "logger_run_id": "ab12_-XY"}, tmp_path / "good.pt")
    assert checkpoint_info(tmp_path, tmp_path / "good.pt") == {"step": 3, "logger_run_id": "ab12_-XY"}
    for bad in ("../../elsewhere", {"_target_": RECORD}):
        save_checkpoint({"step": 3, "logger_run_id": bad}, tmp_path / "bad.pt")
        with pytest.raises(UntrustedConfig, match="is not a run id"):
            checkpoint_info(tmp_path, tmp_path / "bad.pt")


# ----------------------------------------------------------------------------- other files read back
def test_warm_start_uses_only_the_weights_of_a_crafted_run(run_folder, tmp_path):
    crafted = _crafted(run_folder, tmp_path, _set("model._target_", RECORD))
    model = load_run(run_folder, "model.safetensors").model
    assert warm_start(model, crafted) == crafted / "model.safetensors"  # the config there is never built


def test_run_info_metrics_and_summary_choose_no_code(run_folder, tmp_path):
    from enhanced_tx.tracking.sweep_reader import read_job

    crafted = _crafted(run_folder, tmp_path, lambda config: None)
    payload = {"_target_": RECORD, "_args_": [1]}
    (crafted / "run_info.json").write_text(json.dumps({"command": payload, "started": payload}))
    (crafted / "metrics.jsonl").write_text(json.dumps({"step": 1, "val/loss": 2.0, "x": payload}) + "\n")
    (crafted / "summary.json").write_text(json.dumps({"val/loss": 2.0, "x": payload}))
    job = read_job(crafted)
    assert job.last("val/loss") == 2.0


def test_tokenizer_files_choose_no_code(run_folder, tmp_path):
    """tokenizer_config.json may name a class and remote code (auto_map): neither is used."""
    crafted = _crafted(run_folder, tmp_path, lambda config: None)
    marker = tmp_path / "ran"
    (crafted / "tokenizer" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    settings = json.loads((crafted / "tokenizer" / "tokenizer_config.json").read_text())
    settings.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (crafted / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer = load_run(crafted, "model.safetensors").tokenizer
    assert isinstance(tokenizer, PreTrainedTokenizerFast) and not marker.exists()


# ----------------------------------------------------------------------------- local only
def test_a_missing_tokenizer_is_one_line_naming_the_folder_and_no_network(run_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    repo_like = Path("someorg") / "somemodel"  # a run path that reads as a Hub repo id
    shutil.copytree(run_folder, repo_like)
    shutil.rmtree(repo_like / "tokenizer")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    attempts = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a) or 1 / 0)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: attempts.append(a) or 1 / 0)
    with pytest.raises(DataError, match=r"someorg/somemodel/tokenizer holds no saved tokenizer") as missing:
        load_run(repo_like, "model.safetensors")
    assert "\n" not in str(missing.value) and attempts == []


def test_a_truncated_tokenizer_file_is_one_line_naming_it(run_folder, tmp_path):
    copy = tmp_path / "tokenizer"
    shutil.copytree(run_folder / "tokenizer", copy)
    text = (copy / "tokenizer.json").read_text()
    (copy / "tokenizer.json").write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"tokenizer\.json is unreadable or truncated \(JSONDecodeError") as bad:
        load_saved_tokenizer(copy)
    assert str(copy / "tokenizer.json") in str(bad.value) and "\n" not in str(bad.value)


# ----------------------------------------------------------------------------- sharded (DCP) checkpoints
class _Boom:
    def __reduce__(self):
        return (record_call, ("from .metadata",))


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # DCP in one process, as generation uses it
def test_a_dcp_index_round_trips_through_the_safe_reader(tmp_path):
    import torch.distributed.checkpoint as dcp

    from enhanced_tx.checkpoint.dcp_metadata import SafeFileSystemReader

    source, target = torch.nn.Linear(4, 3).to(torch.bfloat16), torch.nn.Linear(4, 3).to(torch.bfloat16)
    dcp.save({"model": source.state_dict(), "step": 7}, checkpoint_id=tmp_path / "dcp")
    state = {"model": target.state_dict(), "step": 0}
    dcp.load(state, storage_reader=SafeFileSystemReader(tmp_path / "dcp"))
    target.load_state_dict(state["model"])
    assert torch.equal(target.weight, source.weight) and state["step"] == 7


def test_a_crafted_dcp_index_in_a_run_folder_runs_no_code(run_folder, tmp_path):
    """A run's best.pt may point at its DCP shards, whose `.metadata` torch reads with pickle."""
    import pickle

    from enhanced_tx.checkpoint import CheckpointError

    crafted = _crafted(run_folder, tmp_path, lambda config: None)
    config = yaml.safe_load((crafted / "config.resolved.yaml").read_text())
    save_checkpoint({"step": 1, "dcp": "dcp/step_1", "config": config}, crafted / "checkpoints" / "best.pt")
    (crafted / "checkpoints" / "dcp" / "step_1").mkdir(parents=True)
    (crafted / "checkpoints" / "dcp" / "step_1" / ".metadata").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match=f"names {RECORD}, which a checkpoint index never holds"):
        load_run(crafted, "best")


def test_the_choices_read_back_for_tags_resolve_nothing(tmp_path, monkeypatch):
    """Evaluation tags its W&B run with the run's group choices: a crafted one must not read a secret."""
    from enhanced_tx.evaluation.tracking import run_choices

    monkeypatch.setenv("TRUST_TEST_SECRET", "s3cret")
    record = tmp_path / ".hydra" / "hydra.yaml"
    record.parent.mkdir()
    record.write_text(
        "hydra:\n  runtime:\n    choices:\n      norm: rmsnorm\n      model: ${oc.env:TRUST_TEST_SECRET}\n"
        "      positional: {_target_: " + RECORD + "}\n"
    )
    assert run_choices(tmp_path) == {"norm": "rmsnorm"}
