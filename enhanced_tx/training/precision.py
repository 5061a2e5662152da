"""Numeric precision of a run. In training a precision means autocast (+ a GradScaler for fp16); in
generation it means the dtype the weights are cast to. One class per choice, one YAML file each."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
from torch import nn


class Precision:
    """Full fp32: no autocast, no scaler."""

    name = "fp32"
    dtype = torch.float32

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        return None

    def check_device(self, device: torch.device) -> None:
        """Warn about combinations that work but are a bad idea on this device."""

    def resolve(
        self, model: nn.Module, device: torch.device, recorded: str | None = None, say: Callable[[str], None] = print
    ) -> Precision:
        """The precision the run uses for `model` on `device`: itself (`AutoPrecision` measures). `recorded`:
        the resolved name a resumed run stored."""
        return self


class BFloat16(Precision):
    """bf16 autocast: matmuls in bf16, reductions and weights in fp32; no loss scaling needed."""

    name = "bf16"
    dtype = torch.bfloat16

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=self.dtype)

    def check_device(self, device: torch.device) -> None:
        if device.type == "cpu" and not cpu_has_bf16_kernels():
            warnings.warn(
                "precision=bf16 on a CPU without bf16 hardware (no AVX-512 or AMX for oneDNN's bf16 kernels) runs "
                "matmuls about 100x slower than fp32 (an AVX2-only AMD EPYC: 0.74 against 71 GFLOP/s); use "
                "precision=fp32, or precision=auto to measure",
                stacklevel=2,
            )


def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (PyTorch's own test; True where it cannot tell): a
    question of speed. Whether decoding may pack bf16 weights is asked of the op itself (`linear.packable_dtypes`)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return True if check is None else bool(check())


class Float16(BFloat16):
    """fp16 autocast with dynamic loss scaling (fp16's narrow range underflows small gradients)."""

    name = "fp16"
    dtype = torch.float16

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(device.type)

    def check_device(self, device: torch.device) -> None:
        if device.type == "cpu":
            warnings.warn(
                "precision=fp16 on a CPU without fp16 hardware runs about 30x slower than fp32; "
                "use precision=bf16 for fast mixed precision on CPU",
                stacklevel=2,
            )


class AutoPrecision(Precision):
    """`precision=auto`: fp32 or bf16, chosen by timing this model's matmul shapes on this machine (cached per
    machine; on CUDA, bf16 where supported); see `precision_choice`. Until resolved it acts as fp32."""

    name = "auto"

    def resolve(
        self, model: nn.Module, device: torch.device, recorded: str | None = None, say: Callable[[str], None] = print
    ) -> Precision:
        from enhanced_tx.training.precision_choice import choose

        options = {p.name: p for p in (Precision(), BFloat16())}
        if recorded in options:  # a resume keeps the precision its run was trained with, on any machine
            say(f"precision=auto: {recorded} (recorded in the resumed run)")
            return options[recorded]
        choice = choose(model, device)
        ratio = "" if choice.ratio is None else f", bf16 autocast {choice.ratio:.2f}x the speed of fp32"
        say(f"precision=auto: {choice.name} ({choice.how}{ratio} on this model's matmul shapes)")
        return options[choice.name]
