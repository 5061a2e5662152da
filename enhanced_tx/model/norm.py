"""Normalisation layers. Each is built as `norm(dim)` by a Hydra `_partial_` factory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, 2019): scale only, no centring, no bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused_rms_norm_applies(x, self.weight):
            return _RMSNormFunction.apply(x, self.weight, self.eps)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


# ATen's fused kernel arrived after torch 2.7; older builds (setup.cfg admits torch>=2.6) take F.rms_norm.
_HAS_FUSED_RMS_NORM = hasattr(torch.ops.aten, "_fused_rms_norm")


def _fused_rms_norm_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 training on a CPU, eager: there `F.rms_norm` has a fused forward kernel but no backward one, so
    autograd runs it as its decomposition (about ten elementwise kernels each way, several saved tensors)."""
    return (
        _HAS_FUSED_RMS_NORM
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
        and not torch.compiler.is_compiling()
    )


class _RMSNormFunction(torch.autograd.Function):
    """RMSNorm with ATen's fused CPU forward (`_fused_rms_norm`: the same bits as `F.rms_norm`) and the
    analytic backward in a few kernels; it saves the input and the per-row 1/rms only.

    With xh = x * r, r = 1 / sqrt(mean(x^2) + eps):  dw = sum_rows(g * xh),  dx = r * (g*w - xh * mean(g*w*xh)).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        xhat = x * rstd  # (..., D)
        tmp = grad * xhat
        grad_w = tmp.reshape(-1, x.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            gw = grad * weight
            mean = torch.mul(gw, xhat, out=tmp).mean(-1, keepdim=True)  # (..., 1)
            grad_x = gw.sub_(xhat.mul_(mean)).mul_(rstd)
        return grad_x, grad_w, None


class LayerNorm(nn.Module):
    """LayerNorm with a weight but no bias (biases add parameters and nothing measurable here)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)
