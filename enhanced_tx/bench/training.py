"""Training throughput: forward + loss + backward + AdamW, timed per step, contenders interleaved.

Every contender gets the same batch, the same loss (mean cross-entropy over fp32 logits) and the same
optimizer (AdamW with the trainer's parameter groups). Steps of all contenders alternate, so a
disturbance on a shared machine hits them alike; the figure is the best step.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from enhanced_tx.bench.batch import Batch, make_batch
from enhanced_tx.bench.peers import Contender
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.timing import Samples, time_once
from enhanced_tx.training.compiling import CompiledBlocks
from enhanced_tx.training.optim import parameter_groups

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
OPTIMIZERS = ("loop", "foreach", "fused")


@dataclass
class TrainOptions:
    optimizer: str = "fused"  # loop | foreach | fused: AdamW's implementation
    sync_every_step: bool = False  # call loss.item() after every step, as a naive loop would
    compile: bool = False  # torch.compile the forward pass and the loss together
    compile_blocks: bool = False  # instead: each of our blocks compiled as trainer.compile=true does (CompiledBlocks)
    compile_backend: str = "inductor"  # torch.compile's backend (aot_eager: a smoke test without a C++ build)


def build_optimizer(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    flags = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[kind]
    return torch.optim.AdamW(parameter_groups(model), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.1, **flags)


class TrainStep:
    """One contender's training step in one precision (fp32, or bf16/fp16 autocast)."""

    def __init__(self, contender: Contender, dtype: str, batch: Batch, options: TrainOptions) -> None:
        self.contender, self.dtype, self.batch, self.options = contender, dtype, batch, options
        contender.model.train()
        self.optimizer = build_optimizer(contender.model, options.optimizer)
        compiled = torch.compile(self._forward_loss, backend=options.compile_backend) if options.compile else None
        self.forward_loss = compiled or self._forward_loss
        # the trainer's per-block compilation (trainer.compile=true): blocks compiled inside the step only
        self.blocks = CompiledBlocks(contender.model, options.compile_backend, enabled=options.compile_blocks)
        self.device = batch.src.device
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == "fp16" else None
        self.last_loss: torch.Tensor | None = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype not in AUTOCAST_DTYPES:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.dtype])

    def _forward_loss(self, src: torch.Tensor, tgt_in: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.contender.logits(src, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    def __call__(self) -> None:
        b = self.batch
        with self.blocks.active():
            with self._autocast():
                loss = self.forward_loss(b.src, b.tgt_in, b.labels)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = loss.detach()
        if self.options.sync_every_step:
            loss.item()


@dataclass
class TrainResult:
    size: str
    dtype: str
    model: str
    tokens_per_s: float
    step_s: float
    median_step_s: float
    loss: float  # last step's loss: finite, or the row is meaningless
    gflops: float | None = None  # achieved model GFLOP/s
    mfu: float | None = None


def measure_training(
    shape: Shape,
    contenders: list[Contender],
    dtype: str,
    steps: int,
    device: torch.device,
    options: TrainOptions | list[TrainOptions] | None = None,
    flops_per_token: float | None = None,
    peak: float | None = None,
    labels: list[str] | None = None,
) -> list[TrainResult]:
    """Interleave `steps` timed steps of every contender (after warm-up) and report the best step of each."""
    if not isinstance(options, list):
        options = [options or TrainOptions()] * len(contenders)
    batch = make_batch(shape, device)
    stepper = [TrainStep(c, dtype, batch, o) for c, o in zip(contenders, options, strict=True)]
    for step in stepper:
        for _ in range(3 if step.options.compile or step.options.compile_blocks else 1):
            step()  # warm-up: allocator, kernel selection, optimizer state, compilation
    samples = [Samples() for _ in stepper]
    for _ in range(steps):
        for step, sample in zip(stepper, samples, strict=True):
            sample.add(time_once(step, device))
    results = []
    for i, (step, sample) in enumerate(zip(stepper, samples, strict=True)):
        tokens_per_s = shape.tokens_per_step / sample.best
        fpt = flops_per_token or step.contender.flops_per_token
        gflops = fpt * tokens_per_s / 1e9 if fpt else None
        results.append(
            TrainResult(
                size=shape.name,
                dtype=dtype,
                model=labels[i] if labels else step.contender.name,
                tokens_per_s=tokens_per_s,
                step_s=sample.best,
                median_step_s=sample.median,
                loss=float(step.last_loss),
                gflops=gflops,
                mfu=gflops * 1e9 / peak if gflops and peak else None,
            )
        )
        step.optimizer.zero_grad(set_to_none=True)
    return results
