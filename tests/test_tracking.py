"""Tracking: offline W&B runs read back from their files, the online/offline decision, local files, run info."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from enhanced_tx.tracking import (
    JsonlWriter,
    NullLogger,
    WandbLogger,
    collect_run_info,
    read_jsonl,
    resolve_wandb_mode,
    wandb_api_key_configured,
    write_run_info,
)

# --- reading an offline W&B run without the network ------------------------------------------------
# wandb 0.31 has no public reader for offline runs and writes no wandb-summary.json/config.yaml offline,
# so read the transaction log: a ":W&B" header, then LevelDB-style log records of protobuf `Record`s.

_BLOCK = 32768
_HEADER = 7  # ":W&B" + 2 magic bytes + 1 version byte; each record header is also 7 bytes


def _wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    chunks: list[bytes] = []
    pending = b""
    pos = _HEADER
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block's tail too short for a header is zero padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += room
            continue
        body = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 1:  # full
            chunks.append(body)
        elif kind == 2:  # first
            pending = body
        elif kind == 3:  # middle
            pending += body
        elif kind == 4:  # last
            chunks.append(pending + body)
    records = []
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def _items(items) -> dict:
    """``key``/``nested_key`` + JSON value items as a nested dict."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


def _finished_records(folder: Path, timeout: float = 15.0) -> list:
    """The records of a finished run; wandb-core may still be writing them when finish() returns."""
    (log,) = folder.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_records(log)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _read_offline_run(folder: Path) -> dict:
    """run record, history rows by step, final summary, metric definitions and exit code of one run."""
    out: dict = {"history": {}, "summary": {}, "metrics": {}, "exit_code": None, "run": None}
    for record in _finished_records(folder):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"] = _items(record.run.config.update)
        elif kind == "history":
            row = _items(record.history.item)
            out["history"].setdefault(row["_step"], {}).update(row)
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "metric":
            out["metrics"][record.metric.name] = record.metric
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No key, no netrc, W&B's own folders in tmp, and a dead server address in case anything dials out."""
    for var in (
        "WANDB_API_KEY",
        "WANDB_MODE",
        "WANDB_IDENTITY_TOKEN_FILE",
        "WANDB_DISABLED",
        "NETRC",
        "WANDB_DIR",
        "WANDB_PROJECT",
        "WANDB_ENTITY",
        "WANDB_RUN_ID",
        "WANDB_RESUME",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # so a file W&B put in the working directory would show up
    return tmp_path


CHOICES = {"model": "tiny", "norm": "rmsnorm", "positional": "rope", "hydra/launcher": "basic"}


def test_offline_wandb_run_holds_metrics_config_tags_and_table(wandb_env):
    run_dir = wandb_env / "outputs" / "run"
    logger = WandbLogger(project="enhanced-tx-test", tags=["extra"])
    started = time.perf_counter()
    logger.start(
        run_dir,
        config={"model": {"d_model": 16}, "optimizer": {"lr": 0.001}},
        choices=CHOICES,
        tags=["smoke"],
        group="sweep-a",
        name="norm=rmsnorm",
        job_type="train",
    )
    start_seconds = time.perf_counter() - started
    print(f"offline W&B start: {start_seconds:.2f} s")
    assert logger.resolved_mode == "offline"
    val = [3.0, 0.5, 1.0]
    for step in range(3):
        logger.log({"train/loss": torch.tensor(2.0 / (step + 1)), "val/loss": np.float32(val[step])}, step=step)
    logger.log_table("samples", ["prompt", "text"], [["The", "cat"], ["A", torch.tensor(7)]], step=3)
    logger.summary({"params": 1234})
    run_id = logger.run_id
    logger.finish()

    assert start_seconds < 10, "an offline start must not wait for the network"
    (folder,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    assert list(wandb_env.joinpath("cwd").iterdir()) == []  # nothing outside the run folder
    run = _read_offline_run(folder)
    assert run["run"].run_id == run_id
    assert (run["run"].project, run["run"].run_group, run["run"].display_name, run["run"].job_type) == (
        "enhanced-tx-test",
        "sweep-a",
        "norm=rmsnorm",
        "train",
    )
    assert set(run["run"].tags) == {"extra", "smoke", "model=tiny", "norm=rmsnorm", "positional=rope"}
    assert run["config"]["model"] == {"d_model": 16}
    assert run["config"]["optimizer"] == {"lr": 0.001}
    assert run["config"]["choices"] == CHOICES
    assert [run["history"][s]["train/loss"] for s in range(3)] == pytest.approx([2.0, 1.0, 2.0 / 3])
    assert [run["history"][s]["val/loss"] for s in range(3)] == val
    assert run["history"][3]["samples"]["_type"] == "table-file"
    assert run["history"][3]["samples"]["nrows"] == 2
    (table_file,) = (folder / "files" / "media" / "table").glob("samples_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["prompt", "text"] and table["data"] == [["The", "cat"], ["A", 7]]
    assert run["metrics"]["val/loss"].summary.min
    assert run["summary"]["val/loss"] == {"min": 0.5}
    assert run["summary"]["params"] == 1234
    assert run["exit_code"] == 0

    # the same numbers, locally
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["val/loss"] for r in rows] == val
    assert read_jsonl(run_dir / "tables.jsonl")[0]["rows"] == [["The", "cat"], ["A", 7]]
    assert json.loads((run_dir / "summary.json").read_text()) == {"params": 1234}


@pytest.mark.parametrize("how", ["finish(1)", "exception"])
def test_failed_run_is_marked_failed(wandb_env, how):
    run_dir = wandb_env / "run"
    logger = WandbLogger(mode="offline")
    if how == "finish(1)":
        logger.start(run_dir, config={"a": 1})
        logger.log({"train/loss": 1.0}, step=0)
        logger.finish(exit_code=1)
    else:
        with pytest.raises(RuntimeError, match="boom"), logger:
            logger.start(run_dir, config={"a": 1})
            raise RuntimeError("boom")
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    assert _read_offline_run(folder)["exit_code"] == 1
    logger.finish()  # a second finish is harmless


def test_resumed_run_continues_the_same_wandb_run(wandb_env):
    run_dir = wandb_env / "run"
    first = WandbLogger()
    first.start(run_dir, config={"a": 1})
    first.log({"train/loss": 1.0}, step=10)
    first.finish()
    second = WandbLogger()
    second.start(run_dir, config={"a": 1}, resume_id=first.run_id)
    second.log({"train/loss": 0.5}, step=20)
    second.finish()
    assert second.run_id == first.run_id
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2  # `wandb sync` uploads both into the one run
    assert {_read_offline_run(f)["run"].run_id for f in folders} == {first.run_id}
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [10, 20]


def test_disabled_mode_writes_only_local_files(wandb_env):
    logger = WandbLogger(mode="disabled")
    logger.start(wandb_env / "run")
    logger.log({"x": 1}, step=0)
    logger.finish()
    assert logger.run_id is None
    assert not (wandb_env / "run" / "wandb").exists()
    assert read_jsonl(wandb_env / "run" / "metrics.jsonl")[0]["x"] == 1


def test_forced_online_without_a_key_fails_instead_of_prompting(wandb_env, monkeypatch):
    import wandb

    def no_init(*args, **kwargs):
        raise AssertionError("wandb.init must not be reached")

    monkeypatch.setattr(wandb, "init", no_init)
    with pytest.raises(ValueError, match="logger.mode=online but no W&B API key.*wandb login"):
        WandbLogger(mode="online").start(wandb_env / "run")


def test_an_unreachable_server_falls_back_to_offline_in_auto_mode_and_fails_in_one_line_when_forced(
    wandb_env, monkeypatch, capsys
):
    import wandb

    from enhanced_tx.tracking import wandb_logger

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # a key: auto mode chooses online
    monkeypatch.setattr(wandb_logger, "_SERVER_UNREACHABLE", False)
    real_init, modes = wandb.init, []

    def init_without_network(*args, settings, **kwargs):
        modes.append(settings.mode)
        if settings.mode == "online":
            raise wandb.errors.CommError("Timed out while retrying: Post graphql: no such host")
        return real_init(*args, settings=settings, **kwargs)

    monkeypatch.setattr(wandb, "init", init_without_network)
    logger = WandbLogger(project="enhanced-tx-test")
    logger.start(wandb_env / "run1")
    logger.log({"loss": 1.0}, step=1)
    logger.finish()
    assert modes == ["online", "offline"] and logger.resolved_mode == "offline"
    assert "W&B could not start online (Timed out while retrying" in capsys.readouterr().err
    assert list((wandb_env / "run1" / "wandb").glob("offline-run-*"))
    second = WandbLogger(project="enhanced-tx-test")  # the next job of a sweep does not wait again
    second.start(wandb_env / "run2")
    second.finish()
    assert modes == ["online", "offline", "offline"]
    with pytest.raises(ValueError, match=r"^logger.mode=online but W&B could not start online .*logger.mode=offline"):
        WandbLogger(mode="online").start(wandb_env / "run3")


# --- online or offline -----------------------------------------------------------------------------


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


def test_auto_mode_is_offline_without_a_key(tmp_path):
    assert resolve_wandb_mode(None, _env(tmp_path)) == "offline"
    assert not wandb_api_key_configured(_env(tmp_path))


def test_auto_mode_is_online_with_an_env_key(tmp_path):
    assert resolve_wandb_mode(None, _env(tmp_path, WANDB_API_KEY="k" * 40)) == "online"


def test_auto_mode_reads_netrc_for_the_wandb_host(tmp_path):
    (tmp_path / ".netrc").write_text("machine example.com login user password other\n")
    assert resolve_wandb_mode(None, _env(tmp_path)) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login user\n")  # an entry without a key
    assert resolve_wandb_mode(None, _env(tmp_path)) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert resolve_wandb_mode(None, _env(tmp_path)) == "online"
    # a private server: its own host counts, api.wandb.ai does not
    assert resolve_wandb_mode(None, _env(tmp_path, WANDB_BASE_URL="https://wandb.corp.example")) == "offline"
    other = tmp_path / "elsewhere" / "netrc"
    other.parent.mkdir()
    other.write_text("machine wandb.corp.example login user password k\n")
    env = _env(tmp_path / "nohome", NETRC=str(other), WANDB_BASE_URL="https://wandb.corp.example")
    assert resolve_wandb_mode(None, env) == "online"


def test_auto_mode_finds_the_key_wandb_login_writes_for_its_default_server(tmp_path):
    """wandb >= 0.2x logs in to CoreWeave Forge by default and stores the key under that host."""
    (tmp_path / ".netrc").write_text("machine api.forge.coreweave.com\n  login user\n  password " + "a" * 40 + "\n")
    assert resolve_wandb_mode(None, _env(tmp_path)) == "online"
    # the W&B API host behind Forge shares the key, as wandb itself resolves it
    env = _env(tmp_path, WANDB_BASE_URL="https://api.wandb.ai")
    assert resolve_wandb_mode(None, env) == "online"


def test_unreadable_netrc_means_no_key(tmp_path):
    (tmp_path / ".netrc").write_text('machine "api.wandb.ai\n')
    assert resolve_wandb_mode(None, _env(tmp_path)) == "offline"


def test_explicit_mode_and_wandb_mode_override_the_key_check(tmp_path):
    keyed = _env(tmp_path, WANDB_API_KEY="k" * 40)
    assert resolve_wandb_mode("offline", keyed) == "offline"
    assert resolve_wandb_mode("disabled", keyed) == "disabled"
    assert resolve_wandb_mode("online", _env(tmp_path)) == "online"
    assert resolve_wandb_mode(None, {**keyed, "WANDB_MODE": "offline"}) == "offline"
    assert resolve_wandb_mode(None, _env(tmp_path, WANDB_MODE="dryrun")) == "offline"
    with pytest.raises(ValueError, match="logger.mode=sometimes is not one of online, offline, disabled"):
        resolve_wandb_mode("sometimes", keyed)


# --- local files -----------------------------------------------------------------------------------


def test_jsonl_round_trip_converts_numbers(tmp_path):
    path = tmp_path / "m.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"loss": torch.tensor(0.25), "acc": np.float32(0.5), "n": np.int64(3), "lr": 1e-4}, step=1)
        writer.write({"loss": torch.tensor([1.5])[0], "name": "x"}, step=2)
        assert len(read_jsonl(path)) == 2  # flushed line by line, readable while still open
    rows = read_jsonl(path)
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 0.25), (2, 1.5)]
    assert rows[0]["acc"] == 0.5 and rows[0]["n"] == 3 and rows[0]["lr"] == 1e-4
    assert isinstance(rows[0]["loss"], float) and isinstance(rows[0]["time"], float)
    with JsonlWriter(path) as writer:  # a resumed run appends
        writer.write({"loss": 0.1}, step=3)
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]


def test_read_jsonl_drops_a_torn_last_line_only(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match="m.jsonl:2 is not valid JSON"):
        read_jsonl(path)


def test_read_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    from enhanced_tx.evaluation.records import write_rows

    rows = [{"source": "a\u2028b\u0085c", "hypothesis": "x\r"}, {"source": "ok", "hypothesis": "\u2029"}]
    path = tmp_path / "rows.jsonl"
    write_rows(path, rows)
    assert read_jsonl(path) == rows


def test_null_logger_writes_local_files_only(tmp_path):
    logger = NullLogger()
    with pytest.raises(RuntimeError, match="call start"):
        logger.log({"x": 1}, step=0)
    logger.start(tmp_path / "run", config={"a": 1}, choices=CHOICES)
    logger.log({"val/loss": torch.tensor(2.0)}, step=5)
    logger.log_table("samples", ["a"], [[1]], step=5)
    logger.summary({"best/val_loss": 2.0})
    logger.finish()
    assert logger.run_id is None
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.jsonl", "summary.json", "tables.jsonl"]
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]["val/loss"] == 2.0


def test_logger_configs_build_the_loggers():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1] / "conf" / "logger"
    wandb_logger = instantiate(OmegaConf.load(root / "wandb.yaml"))
    assert isinstance(wandb_logger, WandbLogger)
    assert (wandb_logger.project, wandb_logger.mode, wandb_logger.tags) == ("enhanced-tx", None, [])
    assert type(instantiate(OmegaConf.load(root / "none.yaml"))) is NullLogger


# --- run info --------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_run_info_in_a_git_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "init")
    info = collect_run_info(repo)
    assert info["git"]["commit"] == _git(repo, "rev-parse", "HEAD") and len(info["git"]["commit"]) == 40
    assert info["git"]["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert collect_run_info(repo)["git"]["dirty"] is True
    assert info["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["packages"]["wandb"] and info["packages"]["hydra-core"]
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["command"] == [sys.executable, *sys.argv]
    assert info["hostname"] and info["time"]


def test_run_info_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "plain"
    folder.mkdir()
    path = write_run_info(tmp_path / "run", repo_dir=folder)
    info = json.loads(path.read_text())
    assert path.name == "run_info.json"
    assert info["git"] == {"commit": None, "branch": None, "dirty": None}
    assert info["packages"]["torch"]
