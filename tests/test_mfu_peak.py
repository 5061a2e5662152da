"""MFU cannot read above 1 because of a peak measured on a busy machine: the peak is the best of several
measurements, the datasheet and what this machine measured before; an MFU above 1 is flagged, never logged."""

from __future__ import annotations

import json

import pytest
import torch

from enhanced_tx.runtime import peak as peak_module
from enhanced_tx.runtime.peak import PEAKS_FILE, datasheet_peak, machine_key, measure_matmul_peak
from enhanced_tx.training.metrics import ThroughputWindow
from enhanced_tx.training.state import TrainingState


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCED_TX_CACHE", str(tmp_path))
    return tmp_path / PEAKS_FILE


def test_the_peak_is_the_best_of_several_tries_and_is_remembered(cache, monkeypatch):
    readings = iter([5e9, 9e9, 7e9])  # the second try ran while the machine was quiet
    monkeypatch.setattr(peak_module, "best_peak", lambda peaks, name: next(readings))
    cpu = torch.device("cpu")
    assert measure_matmul_peak(cpu, torch.float32, size=64, repeats=1, tries=3) == 9e9
    assert json.loads(cache.read_text()) == {machine_key(cpu, "fp32"): 9e9}

    readings = iter([1e9, 2e9, 1.5e9])  # a later run on a busy machine keeps the quiet peak
    assert measure_matmul_peak(cpu, torch.float32, size=64, repeats=1, tries=3) == 9e9
    readings = iter([1e9, 2e10, 1.5e9])  # a better reading raises it
    assert measure_matmul_peak(cpu, torch.float32, size=64, repeats=1, tries=3) == 2e10
    assert json.loads(cache.read_text())[machine_key(cpu, "fp32")] == 2e10


def test_a_real_measurement_is_positive_and_accelerators_have_a_datasheet_floor(cache):
    assert measure_matmul_peak(torch.device("cpu"), torch.float32, size=128, repeats=2, tries=2) > 0
    assert datasheet_peak("NVIDIA H100 PCIe|bf16|threads=8|torch=2", "bf16") == 756e12
    assert datasheet_peak("NVIDIA H100 80GB HBM3|bf16|threads=8|torch=2", "bf16") == 989.4e12
    assert datasheet_peak("NVIDIA H100 80GB HBM3|fp32|threads=8|torch=2", "fp32") is None  # measured
    assert datasheet_peak("cpu Intel(R) Xeon(R)|fp32|threads=2|torch=2", "fp32") is None


def test_an_mfu_above_one_is_flagged_once_and_never_logged(capsys):
    window = ThroughputWindow(peak_flops=1e9)
    window.add(loss_sum=2.0, targets=1, tokens=10, seconds=1.0, flops=5e8, finite=True)
    assert window.report(TrainingState())["perf/mfu"] == pytest.approx(0.5)
    window.add(loss_sum=2.0, targets=1, tokens=10, seconds=1.0, flops=1.4e9, finite=True)
    metrics = window.report(TrainingState())
    assert "perf/mfu" not in metrics and metrics["perf/tflops_per_s"] == pytest.approx(1.4e-3)
    window.add(loss_sum=2.0, targets=1, tokens=10, seconds=1.0, flops=5e8, finite=True)
    assert "perf/mfu" not in window.report(TrainingState())  # the peak is wrong: so is every later MFU
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: MFU")]
    assert len(warnings) == 1 and "would read 1.40" in warnings[0] and "trainer.peak_flops" in warnings[0]
