"""`linear_backend=auto` on CPUs: the backend measured fastest per weight shape, cached per machine."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.model import linear_choice
from enhanced_tx.model.linear import linear

from .conftest import fake_contention

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


@pytest.mark.parametrize("other_cpus, saved", [(1.0, False), (0.1, True), (None, True)])
def test_a_choice_measured_beside_a_busy_neighbour_holds_for_this_process_only(cache, monkeypatch, other_cpus, saved):
    monkeypatch.setattr(linear_choice, "BUSY_CPUS", 0.5)
    monkeypatch.setattr(linear_choice, "measure", lambda *a: {"default": 2.0, "onednn": 1.0})
    monkeypatch.setattr(linear_choice, "Contention", fake_contention(other_cpus))  # what /proc said meanwhile
    candidates = {"default": F.linear, "onednn": F.linear}
    assert linear_choice.choose(16, 48, torch.float32, candidates) == "onednn"
    assert linear_choice.choose(16, 48, torch.float32, candidates) == "onednn"  # the process keeps it either way
    written = json.loads(cache.read_text()) if cache.exists() else {}
    assert ("float32 16x48" in written.get(linear_choice.machine_key(), {})) == saved


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


def test_inference_rows_are_bucketed_to_the_next_power_of_two_up_to_512():
    buckets = [linear_choice.rows_bucket(rows) for rows in (0, 1, 2, 5, 8, 9, 40, 512, 600)]
    assert buckets == [1, 1, 2, 8, 8, 16, 64, 512, 512]


def test_an_inference_choice_is_measured_once_per_rows_bucket_and_then_read_from_the_file(cache, monkeypatch):
    calls = []

    def fake_measure(k, n, dtype, rows, candidates):
        calls.append(rows)
        return {"default": 1.0, "onednn_packed": 0.5} if rows > 1 else {"default": 1.0, "onednn_packed": 2.0}

    monkeypatch.setattr(linear_choice, "measure_inference", fake_measure)
    candidates = {"default": None, "onednn_packed": None}
    picks = [linear_choice.choose_inference(32, 64, torch.float32, rows, candidates) for rows in (1, 5, 7, 1, 40)]
    assert picks == ["default", "onednn_packed", "onednn_packed", "default", "onednn_packed"]
    assert calls == [1, 8, 64]  # timed at the bucket's size, once per bucket
    saved = json.loads(cache.read_text())[linear_choice.machine_key()]
    assert saved["inference float32 32x64 rows<=8"]["choice"] == "onednn_packed"
    assert saved["inference float32 32x64 rows<=1"]["choice"] == "default"

    linear_choice.set_cache_dir(cache.parent)  # a new process on the same machine: the file answers
    monkeypatch.setattr(linear_choice, "measure_inference", lambda *a: pytest.fail("measured again"))
    assert linear_choice.choose_inference(32, 64, torch.float32, 6, candidates) == "onednn_packed"


def test_a_choice_first_needed_under_a_dispatch_mode_is_measured_outside_it(cache):
    """Under FlopCounterMode (or the bench's MatmulTimer) the timing runs without the mode: its matmuls are not
    counted as the caller's, and its hooks do not slow what is timed (the slow compiled-step FLOP test caught it)."""
    from torch.utils.flop_counter import FlopCounterMode

    candidates = {"default": lambda weight: lambda x: F.linear(x, weight)}
    with FlopCounterMode(display=False) as flops:
        assert linear_choice.choose_inference(32, 64, torch.float32, 4, candidates) == "default"
    assert flops.get_total_flops() == 0
    assert "inference float32 32x64 rows<=4" in json.loads(cache.read_text())[linear_choice.machine_key()]


def test_measure_inference_times_each_candidate_on_the_weight_it_prepared():
    prepared = []

    def prepare(weight):
        prepared.append(tuple(weight.shape))
        return lambda x: F.linear(x, weight)

    seconds = linear_choice.measure_inference(32, 64, torch.float32, 8, {"default": prepare, "other": prepare})
    assert prepared == [(64, 32), (64, 32)]  # once each, before the timing
    assert set(seconds) == {"default", "other"} and all(0 < s < 1 for s in seconds.values())


@pytest.mark.parametrize("choice, packs", [("default", False), ("onednn_packed", True)])
def test_decoding_with_auto_follows_the_cached_choice_for_its_rows(cache, choice, packs):
    from enhanced_tx.model import linear as linear_module

    shape = "inference float32 48x80 rows<=8"
    cache.write_text(json.dumps({linear_choice.machine_key(): {shape: {"choice": choice, "seconds": {}}}}))
    x, weight = torch.randn(5, 1, 48), torch.nn.Parameter(torch.randn(80, 48))
    reference = F.linear(x, weight.detach())
    with torch.inference_mode(), linear_module.packed_weights():
        first = linear(x, weight, "auto")
        assert not linear_module._packed_cache()  # a weight's first use in the block is not worth packing
        assert torch.equal(first, reference)  # F.linear itself
        y = linear(x, weight, "auto")
        assert bool(linear_module._packed_cache()) == packs  # a packed copy only where packing was chosen
    assert not (linear_module._packed_cache() or linear_module._seen())  # both forgotten on exit
    if packs:
        torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(y, reference)


def test_decoding_with_auto_repacks_a_weight_updated_inside_the_block(cache):
    """A weight changed in place (its version bumped) after it was packed is packed again, never served the
    stale copy."""
    from enhanced_tx.model import linear as linear_module

    shape = "inference float32 48x80 rows<=8"
    cache.write_text(json.dumps({linear_choice.machine_key(): {shape: {"choice": "onednn_packed", "seconds": {}}}}))
    x, weight = torch.randn(5, 1, 48), torch.nn.Parameter(torch.randn(80, 48))
    with torch.inference_mode(), linear_module.packed_weights():
        for _ in range(3):
            linear(x, weight, "auto")
        assert linear_module._packed_cache()  # packed from the second use
        with torch.inference_mode(False), torch.no_grad():
            weight.mul_(-1)
        y = linear(x, weight, "auto")
    torch.testing.assert_close(y, F.linear(x, weight.detach()), rtol=1e-5, atol=1e-5)
