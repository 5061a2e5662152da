"""Smoke test of `python -m enhanced_tx.bench --quick`: it runs end to end and prints ratio columns.

No timing assertions: figures depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.bench.__main__ import main
from enhanced_tx.model.linear import linear, packed_weights


@pytest.mark.slow  # ~21 s: the whole --quick bench; its sections have fast tests of their own
def test_quick_bench_prints_tables_with_ratio_columns(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--quick", "--dtypes", "fp32", "--sections", "train,generate,memory", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for column in ("tok/s", "vs bart", "vs t5", "vs nn.Transformer", "vs BART fp32", "ckpt / plain"):
        assert column in text
    results = json.loads(out.read_text())
    assert {r["model"] for r in results["train"]} == {"ours", "bart", "t5", "nn.Transformer"}
    assert all(r["tokens_per_s"] > 0 for r in results["train"] + results["generate"])
    assert "chunked / filed" in text
    (loss_memory,) = results["loss_memory"]  # ours, tiny fp32: the chunked loss keeps no logits for the backward
    assert loss_memory["chunked_saved_mb"] < loss_memory["full_saved_mb"]
    assert loss_memory["chunked_mb"] < loss_memory["filed_mb"]  # and pointwise recompute stores less than as filed


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_onednn_linear_matches_default_to_fp32_rounding():
    torch.manual_seed(0)
    x = torch.randn(3, 37, 96, requires_grad=True)
    w = torch.randn(80, 96, requires_grad=True)
    grad = torch.randn(3, 37, 80)
    values = []
    for backend in ("default", "onednn"):
        y = linear(x, w, backend)
        gx, gw = torch.autograd.grad(y, (x, w), grad)
        values.append((y, gx, gw))
    for ref, got in zip(values[0], values[1], strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_onednn_inference_uses_a_packed_copy_that_follows_weight_updates():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(1024, 512))  # 2 MiB: above the small-weight cut-off
    x = torch.randn(2, 3, 512)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 0.1)):
        w = weight if dtype == torch.float32 else weight.detach().to(dtype)
        with torch.inference_mode(), packed_weights():
            got = linear(x.to(dtype), w, "onednn")
        torch.testing.assert_close(got.float(), F.linear(x.to(dtype), w).float(), rtol=tol, atol=tol)
    with torch.no_grad():
        weight.mul_(-1)  # an update bumps the version: the packed copy must be rebuilt
    with torch.inference_mode(), packed_weights():
        got = linear(x, weight, "onednn")
    torch.testing.assert_close(got, F.linear(x, weight.detach()), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_packed_copies_of_one_thread_never_reach_another_threads_forward_passes():
    import threading

    weight = torch.nn.Parameter(torch.randn(1024, 512))  # above the small-weight cut-off: packed in generation
    x = torch.randn(3, 512)
    inside, leave = threading.Event(), threading.Event()

    def generating() -> None:  # holds packed copies while the main thread trains
        with torch.inference_mode(), packed_weights():
            linear(x, weight, "auto")
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=generating)
    thread.start()
    try:
        assert inside.wait(30)
        optimizer = torch.optim.AdamW([weight], lr=0.5, fused=True)  # in place, the version stays
        with torch.inference_mode():
            linear(x, weight, "auto")
        linear(x, weight, "auto").square().sum().backward()
        optimizer.step()
        with torch.inference_mode():
            got = linear(x, weight, "auto")
        torch.testing.assert_close(got, F.linear(x, weight.detach()), rtol=1e-4, atol=1e-4)
    finally:
        leave.set()
        thread.join()
