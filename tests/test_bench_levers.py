"""The levers bench keeps one A/B's model copies alive at a time (the small levers once ran out of memory)."""

from __future__ import annotations

import gc
import weakref

import torch

import enhanced_tx.bench.levers as levers
from enhanced_tx.bench.peers import build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.training import TrainOptions

MICRO = Shape("micro", d_model=32, n_heads=4, n_layers=1, ffn=64, vocab=128, batch=2, src_len=8, tgt_len=8)


def test_an_ab_frees_the_previous_ab_copies_before_it_measures(monkeypatch):
    ours = build_ours(MICRO)
    first = levers._copy(ours)
    cycle: list = [first.model]
    cycle.append(cycle)  # a reference cycle, as the copies sit in after a real A/B: refcounting alone frees nothing
    dead = weakref.ref(first.model)
    gc.disable()  # the test must not depend on when the collector happens to run by itself
    try:
        levers._train_ab(
            MICRO, "fp32", 1, torch.device("cpu"), {"a": (first, TrainOptions()), "b": (ours, TrainOptions())}
        )
        del first, cycle
        seen = []
        real = levers.measure_training
        monkeypatch.setattr(levers, "measure_training", lambda *a, **k: (seen.append(dead() is None), real(*a, **k))[1])
        values = levers._train_ab(
            MICRO,
            "fp32",
            1,
            torch.device("cpu"),
            {"c": (levers._copy(ours), TrainOptions()), "d": (ours, TrainOptions())},
        )
    finally:
        gc.enable()
    assert seen == [True]
    assert set(values) == {"c", "d"} and all(v > 0 for v in values.values())
