"""Keeping freed memory: a reallocated large buffer no longer page-faults, and the numbers do not change."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys, torch
from enhanced_tx.training.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
w = torch.randn(512, 16, requires_grad=True)  # narrow: the 64 MiB input is what is freed, not the FLOPs
faults, values = [], []
for step in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.randn(32768, 512)  # 64 MiB (above glibc's largest mmap threshold), freed every step
    loss = (x @ w).square().mean()
    loss.backward()
    values.append(loss.item())
    del x, loss
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": min(faults[2:]), "values": values}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keeping_freed_memory_removes_page_faults_and_keeps_the_numbers():
    default, kept = _run("default"), _run("keep")
    assert kept["applied"] is True
    assert default["faults"] > 1000  # a fresh mmap every step: its pages fault in again
    assert kept["faults"] < default["faults"] / 10
    assert kept["values"] == default["values"]


@pytest.mark.parametrize("setting, calls", [([], 1), (["trainer.keep_freed_memory=false"], 0)])
def test_cpu_training_keeps_freed_memory_unless_turned_off(setting, calls, tmp_path, text_file, monkeypatch):
    from enhanced_tx.tasks.train import train
    from enhanced_tx.training import allocator

    from .conftest import TINY_TRAIN, compose_train

    made = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: made.append(True) or True)
    overrides = [*TINY_TRAIN, "data=text", f"data.path={text_file}", "trainer.max_steps=1", *setting]
    train(compose_train(tmp_path, *overrides))
    assert len(made) == calls
