"""`linear_backend=auto` on CPUs: the backend measured fastest per weight shape, cached per machine."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.model import linear_choice
from enhanced_tx.model.linear import linear

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")


@pytest.fixture
def cache(tmp_path):
    linear_choice.set_cache_dir(tmp_path)
    yield tmp_path / "linear_backend.json"
    linear_choice.set_cache_dir(None)


def test_pick_keeps_the_default_unless_another_backend_wins_by_the_margin():
    assert linear_choice.pick({"default": 1.0, "onednn": 0.5}) == "onednn"
    assert linear_choice.pick({"default": 1.0, "onednn": 0.99}) == "default"  # within the 3% margin
    assert linear_choice.pick({"default": 1.0, "onednn": 1.5}) == "default"


def test_the_choice_is_measured_once_and_then_read_from_the_machines_cache_file(cache, monkeypatch):
    calls = []

    def fake_measure(k, n, dtype, candidates):
        calls.append((k, n))
        return {"default": 2.0, "onednn": 1.0}

    monkeypatch.setattr(linear_choice, "measure", fake_measure)
    candidates = {"default": F.linear, "onednn": F.linear}
    assert linear_choice.choose(16, 48, torch.float32, candidates) == "onednn"
    assert linear_choice.choose(16, 48, torch.float32, candidates) == "onednn"
    assert calls == [(16, 48)]  # remembered in the process
    saved = json.loads(cache.read_text())[linear_choice.machine_key()]["float32 16x48"]
    assert saved["choice"] == "onednn" and saved["seconds"] == {"default": 2.0, "onednn": 1.0}

    linear_choice.set_cache_dir(cache.parent)  # a new process on the same machine: the file answers
    monkeypatch.setattr(linear_choice, "measure", lambda *a: pytest.fail("measured again"))
    assert linear_choice.choose(16, 48, torch.float32, candidates) == "onednn"


def test_measure_times_every_candidate_on_a_forward_and_backward():
    seconds = linear_choice.measure(32, 64, torch.float32, {"default": F.linear, "twice": lambda x, w: F.linear(x, w)})
    assert set(seconds) == {"default", "twice"} and all(0 < s < 60 for s in seconds.values())


@pytest.mark.parametrize("choice, onednn", [("default", False), ("onednn", True)])
def test_auto_follows_the_cached_choice_with_the_same_numbers(cache, choice, onednn):
    shape = "float32 24x40"
    cache.write_text(json.dumps({linear_choice.machine_key(): {shape: {"choice": choice, "seconds": {}}}}))
    x = torch.randn(5, 24, requires_grad=True)
    weight = torch.randn(40, 24, requires_grad=True)
    y = linear(x, weight, "auto")
    assert (type(y.grad_fn).__name__ == "_OnednnLinearBackward") == onednn
    y.sum().backward()
    reference = F.linear(x.detach(), weight.detach())
    torch.testing.assert_close(y.detach(), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, torch.ones(5, 40) @ weight.detach(), rtol=1e-5, atol=1e-5)
