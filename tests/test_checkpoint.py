"""Checkpoints: exact round trips, atomic writes, corruption and malicious files, rotation, weights, RNG."""

from __future__ import annotations

import errno
import os
import pickle
import random
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from enhanced_tx.checkpoint import (
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    read_checkpoint_step,
    restore_rng_state,
    save_checkpoint,
    save_model_weights_only,
)


class TiedLM(nn.Module):
    """Embedding tied to the output head, like the real model."""

    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.tensor([0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(self.embed(x)) * self.scale)


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = TiedLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.arange(10)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 7,
        "config": {"model": {"d_model": 16}, "tags": ["a", "b"], "lr": 1e-3, "none": None},
        "wandb_run_id": "abc123",
        "rng": capture_rng_state(),
        "dtype": torch.bfloat16,
        "shape": (3, 4),
    }


def _assert_same(a, b) -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def _tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- full checkpoints ------------------------------------------------------------------------------


def test_round_trip_is_exact_and_loads_weights_only(tmp_path):
    state = _state()
    path = tmp_path / "ck.pt"
    save_checkpoint(state, path)
    _assert_same(state, load_checkpoint(path))
    # the file itself is plain torch: a bare weights_only load works with no code of ours
    outer = torch.load(path, weights_only=True)
    assert outer["format"] == "enhanced-tx/checkpoint" and outer["step"] == 7
    assert read_checkpoint_step(path) == 7
    assert _tmp_files(tmp_path) == []


def test_save_refuses_objects_a_weights_only_load_would_refuse(tmp_path):
    class Opaque:
        pass

    with pytest.raises(CheckpointError, match=r"state\['config'\]\['x'\] is a .*Opaque"):
        save_checkpoint({"config": {"x": Opaque()}}, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="numpy"):
        save_checkpoint({"a": np.zeros(3)}, tmp_path / "ck.pt")
    assert not (tmp_path / "ck.pt").exists()


@pytest.mark.parametrize("fail_in", ["write", "fsync"])
def test_failed_write_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch, fail_in):
    path = tmp_path / "ck.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_in == "fsync":
        monkeypatch.setattr(os, "fsync", disk_full)
    else:
        import enhanced_tx.checkpoint.format as ck

        real_open = open

        class FullDisk:
            """A file whose disk fills up after some bytes have landed."""

            def __init__(self, f):
                self.f = f

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                if self.f.tell() > 100:
                    disk_full()
                return self.f.write(data)

        monkeypatch.setattr(ck, "open", lambda p, mode="r": FullDisk(real_open(p, mode)), raising=False)

    with pytest.raises(CheckpointError, match="disk full while writing .*ck.pt"):
        save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert _tmp_files(tmp_path) == []
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_failed_manager_save_keeps_the_previous_last(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path)
    manager.save({"step": 1}, 1)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="disk full"):
        manager.save({"step": 2}, 2)
    monkeypatch.undo()
    assert _tmp_files(tmp_path) == []
    assert manager.latest_good() == manager.last
    assert load_checkpoint(manager.last)["step"] == 1


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope.pt does not exist; "):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(), path)
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="corrupt|truncated"):
            load_checkpoint(path)


def test_a_truncated_plain_state_dict_is_reported_as_truncated(tmp_path):
    model = torch.nn.Linear(64, 64)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    data = path.read_bytes()
    for keep in (10, len(data) // 2, len(data) - 100):
        path.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match=r"weights.pt is corrupt or truncated"):
            load_model_weights(model, path)


def test_flipped_byte_never_loads_wrong_data(tmp_path):
    path = tmp_path / "ck.pt"
    state = {"step": 3, "w": torch.randn(64), "config": {"name": "x"}}
    save_checkpoint(state, path)
    data = path.read_bytes()
    detected = tried = 0
    # one bit in every 3rd byte: either a clear error or the exact original (zip padding is harmless)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch comments on some damaged headers before failing
        for i in range(0, len(data), 3):
            bad = bytearray(data)
            bad[i] ^= 0x10
            path.write_bytes(bytes(bad))
            tried += 1
            try:
                loaded = load_checkpoint(path)
            except CheckpointError:
                detected += 1
                continue
            _assert_same(state, loaded)
    assert detected > tried // 4
    # a flip in the middle of the tensor data is a checksum mismatch
    offset = data.index(state["w"].numpy().tobytes()[:16])
    bad = bytearray(data)
    bad[offset + 5] ^= 0x01
    path.write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "inside-our-format"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.ones(2)}, "x": _Evil(sentinel)}
    if how == "torch.save":
        torch.save(payload, path)
    elif how == "pickle.dump":
        path.write_bytes(pickle.dumps(payload))
    else:
        # a valid wrapper and a correct checksum around a code-running payload
        import hashlib
        import io

        buf = io.BytesIO()
        torch.save(payload, buf)
        raw = buf.getvalue()
        torch.save(
            {
                "format": "enhanced-tx/checkpoint",
                "version": 1,
                "step": 1,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "payload": torch.frombuffer(bytearray(raw), dtype=torch.uint8),
            },
            path,
        )
    model = TiedLM()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about legacy pickles before refusing them
        with pytest.raises(
            CheckpointError,
            match=r"refused to load .*evil.pt: it contains pickled Python "
            r"objects that could run code.*only load checkpoints you trust",
        ):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match="refused to load"):
            load_model_weights(model, path)
    assert not sentinel.exists()


def test_file_that_is_not_our_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not an enhanced-tx checkpoint.*load_model_weights"):
        load_checkpoint(path)
    path.write_text("hello, I am a text file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"format": "enhanced-tx/checkpoint", "version": 99, "payload": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="version 99.*upgrade"):
        load_checkpoint(path)


# --- a folder of checkpoints -----------------------------------------------------------------------


def test_manager_keeps_last_k_and_writes_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        manager.save({"step": step, "w": torch.full((2,), float(step))}, step, is_best=step == 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "step_30.pt", "step_40.pt"]
    assert load_checkpoint(manager.last)["step"] == 40
    assert load_checkpoint(manager.best)["step"] == 20
    assert manager.latest_good() == manager.last
    assert manager.resolve("best") == manager.best
    assert manager.resolve("auto") == manager.last
    assert manager.resolve(str(tmp_path / "step_30.pt")) == tmp_path / "step_30.pt"
    assert manager.resolve(tmp_path) == manager.last
    with pytest.raises(CheckpointError, match="does not exist"):
        manager.resolve(tmp_path / "step_10.pt")


def test_latest_good_skips_corrupt_last_and_step_files(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2, 3):
        manager.save({"step": step}, step)
    manager.last.write_bytes(manager.last.read_bytes()[:-40])  # a crash mid-copy, say
    data = bytearray((tmp_path / "step_3.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "step_3.pt").write_bytes(bytes(data))
    with pytest.warns(UserWarning) as record:
        found = manager.latest_good()
    assert found == tmp_path / "step_2.pt"
    messages = [str(w.message) for w in record]
    assert any(m.startswith("skipping") and "last.pt is corrupt" in m for m in messages), messages
    assert any(m.startswith("skipping") and "step_3.pt is corrupt" in m for m in messages), messages
    assert load_checkpoint(found)["step"] == 2
    with pytest.warns(UserWarning):
        assert manager.resolve("auto") == found


def test_latest_good_prefers_newer_step_file_over_stale_last(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save({"step": 1}, 1)
    stale = manager.last.read_bytes()
    manager.save({"step": 2}, 2)
    manager.last.write_bytes(stale)  # as if last.pt's update never happened
    assert manager.latest_good() == tmp_path / "step_2.pt"


def test_empty_folder_resolves_auto_to_none(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    assert manager.latest_good() is None
    assert manager.resolve("auto") is None
    assert manager.resolve(None) is None
    with pytest.raises(CheckpointError, match="last.pt does not exist"):
        manager.resolve("last")


# --- weights only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("half", [False, True])
def test_weights_only_round_trip_with_tied_weights(tmp_path, suffix, half):
    torch.manual_seed(0)
    source = TiedLM()
    path = tmp_path / f"model{suffix}"
    save_model_weights_only(source, path, half_precision=half)
    assert source.embed.weight.dtype == torch.float32  # the caller's model is untouched

    torch.manual_seed(1)
    target = TiedLM()
    load_model_weights(target, path)
    assert target.head.weight is target.embed.weight  # still tied after loading
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert b.dtype == torch.float32, name
        if half:
            torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)
            assert not torch.equal(a, b) or name == "scale"
        else:
            assert torch.equal(a, b), name

    if suffix == ".pt":
        stored = torch.load(path, weights_only=True)
        assert stored["embed.weight"].dtype == (torch.float16 if half else torch.float32)
        # the tied pair is one storage in the file
        assert stored["embed.weight"].data_ptr() == stored["head.weight"].data_ptr()


def test_weights_from_a_full_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = TiedLM()
    save_checkpoint({"model": source.state_dict(), "step": 1}, tmp_path / "last.pt")
    target = TiedLM().to(torch.bfloat16)
    load_model_weights(target, tmp_path / "last.pt")
    assert target.embed.weight.dtype == torch.bfloat16
    torch.testing.assert_close(target.proj.weight.float(), source.proj.weight, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_shape_mismatch_names_the_parameter(tmp_path, suffix):
    save_model_weights_only(TiedLM(dim=16), tmp_path / f"m{suffix}")
    with pytest.raises(CheckpointError) as info:
        load_model_weights(TiedLM(dim=8), tmp_path / f"m{suffix}")
    message = str(info.value)
    assert "from another architecture" in message and "pass the run's own config" in message
    assert "embed.weight has shape [50, 16] in the file and [50, 8] in the model" in message


def test_missing_keys_are_reported_when_strict(tmp_path):
    torch.save(OrderedDict(proj=torch.zeros(1)), tmp_path / "partial.pt")
    save_model_weights_only(nn.Linear(16, 16, bias=False), tmp_path / "lin.safetensors")
    with pytest.raises(CheckpointError, match="do not match the model"):
        load_model_weights(TiedLM(), tmp_path / "lin.safetensors")
    with pytest.raises(CheckpointError, match="do not match the model"):
        load_model_weights(TiedLM(), tmp_path / "partial.pt")


# --- RNG -------------------------------------------------------------------------------------------


def _draws() -> tuple:
    return (
        [random.random() for _ in range(3)],
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.randn(),
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
    )


def test_rng_capture_restore_reproduces_draws_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.gauss(0, 1)  # leave a cached gaussian in both generators
    np.random.randn()
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = _draws()
    assert _draws() != expected  # the generators moved on
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == expected


@pytest.mark.parametrize("target", ["../../elsewhere", "/tmp/dcp/step_1", "dcp/step_1/../../x", "dcp/other"])
def test_a_sharded_reference_outside_its_dcp_folder_is_refused(tmp_path, target):
    """A .pt is safe to load, but DCP unpickles its folder's .metadata: the reference must not lead elsewhere."""
    from enhanced_tx.checkpoint.sharded import load_model

    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint({"dcp": target, "step": 1}, path, step=1)
    with pytest.raises(CheckpointError, match=r"refusing to follow it"):
        load_model(path, torch.nn.Linear(2, 2))


@pytest.mark.parametrize("suffix", [".safetensors", "full.pt"])
def test_weights_of_another_positional_scheme_are_refused_though_every_shape_matches(tmp_path, suffix):
    """rope, sinusoidal and none leave no tensors: only the recorded choice tells them apart."""
    from .conftest import make_model

    sinusoidal, rope = make_model("sinusoidal"), make_model("rope")
    if suffix == ".safetensors":
        path = tmp_path / "model.safetensors"
        save_model_weights_only(sinusoidal, path)
    else:
        path = tmp_path / "last.pt"
        config = {"model": {"positional": {"_target_": "enhanced_tx.model.positional.SinusoidalPositions"}}}
        save_checkpoint({"model": sinusoidal.state_dict(), "config": config, "step": 1}, path, step=1)
    with pytest.raises(CheckpointError, match=r"positional=SinusoidalPositions in the file, RotaryEmbedding in"):
        load_model_weights(rope, path)
    load_model_weights(make_model("sinusoidal", seed=1), path)  # the same choices load
