"""CPU training fast paths against their references: same forward bits, gradients to fp32 rounding."""

from __future__ import annotations

import sys

import pytest
import torch

from enhanced_tx.bench.allocator import run_child
from enhanced_tx.model import RMSNorm


def _pair(dim: int) -> tuple[RMSNorm, torch.nn.RMSNorm]:
    ours, ref = RMSNorm(dim, eps=1e-6), torch.nn.RMSNorm(dim, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    return ours, ref


@pytest.mark.parametrize("shape", [(3, 5, 48), (2, 7, 768), (11, 256)])
def test_rmsnorm_training_path_matches_torch_reference(shape):
    torch.manual_seed(0)
    ours, ref = _pair(shape[-1])
    x = torch.randn(*shape) * 4
    grad = torch.randn(*shape)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), ref(x_ref)
    assert type(y_ours.grad_fn).__name__ == "_RMSNormFunctionBackward"  # the fused path was taken
    assert torch.equal(y_ours, y_ref)  # the forward is ATen's fused kernel: the same bits
    y_ours.backward(grad)
    y_ref.backward(grad)
    # Gradients: the same formula summed in another order; both within fp32 rounding of an fp64 reference.
    ref64 = torch.nn.RMSNorm(shape[-1], eps=1e-6).double()
    with torch.no_grad():
        ref64.weight.copy_(ref.weight)
    x64 = x.double().requires_grad_()
    ref64(x64).backward(grad.double())
    for got, torch_fp32, exact in (
        (x_ours.grad, x_ref.grad, x64.grad),
        (ours.weight.grad, ref.weight.grad, ref64.weight.grad),
    ):
        torch.testing.assert_close(got, torch_fp32, rtol=1e-5, atol=1e-5)
        scale = exact.abs().max()
        assert (got.double() - exact).abs().max() / scale < 4 * (torch_fp32.double() - exact).abs().max() / scale + 1e-7


@pytest.mark.filterwarnings("ignore:Mismatch dtype")
def test_rmsnorm_fused_path_only_where_it_applies():
    torch.manual_seed(0)
    ours, ref = _pair(32)
    x = torch.randn(4, 32, requires_grad=True)
    with torch.no_grad():  # inference: plain F.rms_norm
        assert ours(x).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 residual stream under autocast: fused, fp32 out
        y = ours(x)
        assert y.dtype == torch.float32 and type(y.grad_fn).__name__ == "_RMSNormFunctionBackward"
        assert torch.equal(y, ref(x))
    xb = x.detach().bfloat16().requires_grad_()  # other dtypes: F.rms_norm's own autograd
    assert type(ours(xb).grad_fn).__name__ != "_RMSNormFunctionBackward"
    assert torch.equal(ours(xb), ref(xb))


def test_rmsnorm_input_gradient_only_and_weight_gradient_only():
    torch.manual_seed(0)
    ours, ref = _pair(16)
    x = torch.randn(6, 16)
    ours.weight.requires_grad_(False)
    ref.weight.requires_grad_(False)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(xo).sum().backward()
    ref(xr).sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-5, atol=1e-6)
    ours.weight.requires_grad_(True)
    ref.weight.requires_grad_(True)
    ours(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ~15 s; tests/test_allocator.py checks the same promise in the fast suite
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_malloc_keep_memory_setting_removes_page_faults_and_keeps_the_numbers():
    kept = run_child("tiny", "fp32", steps=3, keep_memory=True)
    default = run_child("tiny", "fp32", steps=3, keep_memory=False)
    assert kept["loss"] == default["loss"]  # allocation policy only: the same arithmetic, bit for bit
    assert kept["faults"] < default["faults"] / 10
