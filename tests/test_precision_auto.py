"""`precision=auto`: fp32 or bf16 chosen by a measurement (faked here both ways), cached per machine, kept
by a resumed run, and resolved the same way for generation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from enhanced_tx.checkpoint import load_checkpoint
from enhanced_tx.model import linear_choice
from enhanced_tx.training import BFloat16, Precision
from enhanced_tx.training import precision_choice as pc
from enhanced_tx.training.precision import AutoPrecision

from .conftest import fake_contention
from .test_training import copy_parts, quiet_trainer

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path):
    linear_choice.set_cache_dir(tmp_path / "cache")
    yield tmp_path / "cache" / pc.CACHE_FILE
    linear_choice.set_cache_dir(None)


def fake_timer(monkeypatch, fp32_s: float, bf16_s: float) -> list:
    """Replace the timer of one forward + backward: fp32 takes `fp32_s`, bf16 autocast `bf16_s`."""
    calls = []

    def timed(dtype, x, weight):
        calls.append(dtype)
        return bf16_s if dtype == torch.bfloat16 else fp32_s

    monkeypatch.setattr(pc, "time_once", timed)
    return calls


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 32))  # 2 shapes, one twice


@pytest.mark.parametrize(
    "fp32_s, bf16_s, expected", [(1.0, 0.5, BFloat16), (0.5, 1.0, Precision), (1.0, 0.99, Precision)]
)
def test_the_choice_follows_the_measurement_both_ways(cache, monkeypatch, fp32_s, bf16_s, expected):
    fake_timer(monkeypatch, fp32_s, bf16_s)
    lines = []
    chosen = AutoPrecision().resolve(model(), CPU, say=lines.append)
    assert type(chosen) is expected  # (1.0, 0.99): within the 3% margin, fp32 (the reference numerics) stays
    assert len(lines) == 1 and chosen.name in lines[0] and f"{fp32_s / bf16_s:.2f}x" in lines[0]


def test_the_measurement_weights_each_shape_by_its_count(monkeypatch):
    fake_timer(monkeypatch, 1.0, 0.25)
    measured = pc.measure(pc.weight_shapes(model()), CPU)
    assert measured.seconds == {"fp32": 3.0, "bf16": 0.75}  # (32x16) twice + (16x32) once, best of the repeats
    assert (measured.timed, measured.shapes) == (2, 2)


def shape_timer(monkeypatch, bf16_per_fp32: float) -> list:
    """A timer whose seconds grow with the weight's size, bf16 `bf16_per_fp32` times fp32's; logs weight shapes."""
    shapes = []

    def timed(dtype, x, weight):
        shapes.append(tuple(weight.shape))
        return weight.numel() * 1e-6 * (bf16_per_fp32 if dtype == torch.bfloat16 else 1.0)

    monkeypatch.setattr(pc, "time_once", timed)
    return shapes


def test_a_bf16_far_behind_on_the_cheapest_shape_stops_the_timing(cache, monkeypatch):
    big = nn.Sequential(nn.Linear(64, 256), nn.Linear(8, 8), nn.Linear(256, 64))
    timed = shape_timer(monkeypatch, 4.0)  # emulated bf16 (an AVX2-only CPU): 19-32x in fact
    measured = pc.measure(pc.weight_shapes(big), CPU)
    assert set(timed) == {(8, 8)} and (measured.timed, measured.shapes) == (1, 3)  # the cheapest, alone
    lines = []
    assert type(AutoPrecision().resolve(big, CPU, say=lines.append)) is Precision
    assert "stopped after 1 of 3 shapes" in lines[0] and "0.25x" in lines[0]


def test_a_bf16_within_the_screen_is_timed_on_every_shape_cheapest_first(monkeypatch):
    big = nn.Sequential(nn.Linear(64, 256), nn.Linear(8, 8), nn.Linear(256, 64))
    timed = shape_timer(monkeypatch, pc.SCREEN * 0.9)
    measured = pc.measure(pc.weight_shapes(big), CPU)
    assert list(dict.fromkeys(timed)) == [(8, 8), (64, 256), (256, 64)] and measured.timed == 3


def test_the_cache_answers_the_second_call(cache, monkeypatch):
    calls = fake_timer(monkeypatch, 1.0, 0.5)
    assert pc.choose(model(), CPU).name == "bf16" and calls
    monkeypatch.setattr(pc, "time_once", lambda *a: pytest.fail("measured again"))
    again = pc.choose(model(), CPU)
    assert (again.name, again.how, again.ratio) == ("bf16", "cached", 2.0)
    saved = json.loads(cache.read_text())[linear_choice.machine_key()]  # the machine key of linear_backend=auto
    assert [entry["choice"] for entry in saved.values()] == ["bf16"]
    # another shape class is measured on its own
    fake_timer(monkeypatch, 0.5, 1.0)
    assert pc.choose(nn.Linear(8, 8), CPU).name == "fp32"


def test_a_choice_measured_beside_a_busy_neighbour_is_not_saved_and_says_so(cache, monkeypatch):
    monkeypatch.setattr(linear_choice, "BUSY_CPUS", 0.5)
    monkeypatch.setattr(pc, "Contention", fake_contention(1.5))  # another process kept 1.5 CPUs busy
    calls = fake_timer(monkeypatch, 1.0, 0.5)
    chosen = pc.choose(model(), CPU)
    assert chosen.name == "bf16" and "not saved for later runs: other processes kept 1.5 CPUs busy" in chosen.how
    assert not cache.exists()
    calls.clear()
    assert pc.choose(model(), CPU).name == "bf16" and calls  # the next run measures again


def test_a_real_measurement_times_both_candidates():
    seconds = pc.measure(pc.weight_shapes(nn.Linear(32, 48)), CPU).seconds
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 10 for s in seconds.values())


def test_cuda_follows_the_hardware_rule_without_measuring(monkeypatch):
    monkeypatch.setattr(pc, "time_once", lambda *a: pytest.fail("measured on CUDA"))
    for supported, name in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert pc.choose(model(), torch.device("cuda")).name == name


def test_a_recorded_choice_wins_over_the_measurement(monkeypatch):
    monkeypatch.setattr(pc, "time_once", lambda *a: pytest.fail("measured despite a recorded choice"))
    assert type(AutoPrecision().resolve(model(), CPU, recorded="bf16", say=lambda _: None)) is BFloat16
    assert type(AutoPrecision().resolve(model(), CPU, recorded="fp32", say=lambda _: None)) is Precision


def test_fixed_precisions_resolve_to_themselves():
    for precision in (Precision(), BFloat16()):
        assert precision.resolve(model(), CPU, recorded="fp32") is precision


def test_the_run_records_the_resolved_precision_and_a_resume_keeps_it(tmp_path, cache, monkeypatch):
    fake_timer(monkeypatch, 1.0, 0.5)
    parts = copy_parts(tmp_path / "run", precision=AutoPrecision())
    quiet_trainer(max_steps=2, eval_every=2).fit(parts)
    assert parts.precision.name == "bf16"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["precision"] == "bf16"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["precision"] == "bf16"

    # the resume runs where fp32 measures faster (another machine): it keeps the run's bf16
    fake_timer(monkeypatch, 0.5, 1.0)
    linear_choice.set_cache_dir(tmp_path / "other-machine")
    resumed = copy_parts(tmp_path / "run", precision=AutoPrecision())
    quiet_trainer(max_steps=3, eval_every=3, resume="auto").fit(resumed)
    assert resumed.precision.name == "bf16"
