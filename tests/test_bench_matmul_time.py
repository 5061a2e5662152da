"""`MatmulTimer`: the seconds a call spends in matmul ops, the floor under the beam goals' ceiling."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from enhanced_tx.bench.beam import BeamResult
from enhanced_tx.bench.goals import evaluate
from enhanced_tx.bench.matmul_time import MatmulTimer, matmul_seconds
from enhanced_tx.bench.runner import Results
from enhanced_tx.model.linear import linear, packed_weights


def test_every_kind_of_matmul_is_counted_once_and_nothing_else_is():
    x, weight = torch.randn(8, 64), torch.randn(96, 64)
    timer = MatmulTimer()
    with timer:
        (x * 2).exp().sum()  # no matmul
    assert timer.calls == 0 and timer.seconds == 0.0
    with timer:
        F.linear(x, weight)  # one op, however it decomposes inside
        x @ weight.t()
        torch.bmm(x[None], weight.t()[None])
    assert timer.calls == 3 and timer.seconds > 0


def test_onednn_and_packed_linears_are_counted():
    x, weight = torch.randn(5, 1, 256), torch.nn.Parameter(torch.randn(2048, 256))
    with torch.inference_mode():
        for run in (lambda: linear(x, weight, "onednn"), lambda: linear(x, weight, "auto")):
            with packed_weights():
                run()  # "auto" may measure its choice on first use: not part of the timed call
                timer = MatmulTimer()
                with timer:
                    run()
                assert timer.calls == 1


def test_the_seconds_are_the_matmuls_own_not_the_rest_of_the_call():
    x, weight = torch.randn(64, 256), torch.randn(256, 256)

    def call() -> None:
        F.linear(x, weight)
        time.sleep(0.05)  # not a matmul: must not count

    assert 0 < matmul_seconds(call) < 0.04


def test_the_beam_goal_ceiling_is_barts_call_over_our_matmul_seconds():
    rows = [
        BeamResult("tiny", 8, "ours", 200.0, 2.0, 31.25, matmul_s=0.5),
        BeamResult("tiny", 8, "bart", 100.0, 4.0, 62.5, matmul_s=1.5),
    ]
    results = Results(config={}, machine={}, beam=rows)
    ((goal, value),) = [(g, v) for g, v in evaluate(results) if g.name.startswith("beam")]
    assert value == 2.0 and goal.ceiling == 8.0 and goal.met(value)
    old = Results(config={}, machine={}, beam=[BeamResult("tiny", 8, "ours", 200.0, 2.0, 31.25), rows[1]])
    ((goal, _),) = [(g, v) for g, v in evaluate(old) if g.name.startswith("beam")]
    assert goal.ceiling is None  # a saved run from before matmul_s: no ceiling, no error
