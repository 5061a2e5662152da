"""Compiled vs eager training step (trainer.compile): our model, the trainer's own step pieces.

Two copies of our model with the same weights take the same step (`micro_batch_loss`, backward, fused
AdamW): one eager, one with every block compiled (`CompiledBlocks`, inductor, installed for the step as
the trainer does). The batch cycles through a few bucketed lengths (multiples of 16 around the bench
shape), so the figure includes what length changes cost a compiled run after its warm-up: nothing when
no shape recompiles. Steps alternate between the two; the figure is each one's best step over a cycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from enhanced_tx.bench.peers import build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.table import Table, fmt
from enhanced_tx.bench.timing import synchronize
from enhanced_tx.bench.training import build_optimizer
from enhanced_tx.data.collate import Batch
from enhanced_tx.training.compiling import CompiledBlocks
from enhanced_tx.training.step_loss import micro_batch_loss

LENGTH_STEPS = (0, -16, -32, 16)  # the bench lengths plus these: four shapes, all multiples of 16


@dataclass
class CompiledResult:
    size: str
    dtype: str
    backend: str
    eager_step_s: float  # best of each length's steps, summed over the cycle of lengths
    compiled_step_s: float
    compile_s: float  # the warm-up: first steps at each length, compilation included
    compilations: int  # graphs compiled over warm-up and timed steps

    @property
    def ratio(self) -> float:
        """Eager seconds over compiled seconds: above 1, the compiled step is faster."""
        return self.eager_step_s / self.compiled_step_s


def _batches(shape: Shape, device: torch.device) -> list[Batch]:
    g = torch.Generator().manual_seed(0)
    out = []
    for delta in LENGTH_STEPS:
        s, t = max(16, shape.src_len + delta), max(16, shape.tgt_len + delta)
        src, tgt = (torch.randint(4, shape.vocab, (shape.batch, n), generator=g) for n in (s, t + 1))
        mask = torch.ones(shape.batch, s, dtype=torch.bool)
        out.append(Batch(src=src, src_mask=mask, tgt_in=tgt[:, :-1], labels=tgt[:, 1:]).to(device))
    return out


class _Step:
    def __init__(self, shape: Shape, dtype: str, device: torch.device, linear_backend: str, compiled: str | None):
        torch.manual_seed(0)  # both copies: the same weights
        self.model = build_ours(shape, linear_backend=linear_backend).model.to(device).train()
        self.optimizer = build_optimizer(self.model, "fused")
        self.blocks = CompiledBlocks(self.model, compiled or "inductor", enabled=compiled is not None)
        self.dtype, self.device = dtype, device

    def __call__(self, batch: Batch) -> float:
        started = time.perf_counter()
        with self.blocks.active(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.dtype == "bf16"):
            summed, _ = micro_batch_loss(self.model, self.model, batch)
            (summed / batch.num_tgt_tokens).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        return time.perf_counter() - started


def measure_compiled(
    shape: Shape, dtype: str, steps: int, device: torch.device, linear_backend: str, backend: str = "inductor"
) -> CompiledResult:
    eager, compiled = (_Step(shape, dtype, device, linear_backend, c) for c in (None, backend))
    batches = _batches(shape, device)
    compile_s = sum(compiled(b) for b in batches)  # warm-up: every length once (compilation)
    for b in batches:
        eager(b)
    best = {id(eager): [float("inf")] * len(batches), id(compiled): [float("inf")] * len(batches)}
    for _ in range(max(1, steps)):
        for i, b in enumerate(batches):
            for step in (eager, compiled):
                best[id(step)][i] = min(best[id(step)][i], step(b))
    return CompiledResult(size=shape.name, dtype=dtype, backend=backend, eager_step_s=sum(best[id(eager)]),
                          compiled_step_s=sum(best[id(compiled)]), compile_s=compile_s,
                          compilations=compiled.blocks.count)  # fmt: skip


def compiled_table(rows: list[CompiledResult]) -> Table:
    columns = ["size", "dtype", "backend", "eager s", "compiled s", "eager / compiled", "warm-up s", "graphs"]
    table = Table("Compiled vs eager training step (ours, trainer.compile: per-block)", columns)
    for r in rows:
        table.add(r.size, r.dtype, r.backend, fmt(r.eager_step_s, 3), fmt(r.compiled_step_s, 3), f"{r.ratio:.2f}x",
                  fmt(r.compile_s, 1), str(r.compilations))  # fmt: skip
    table.notes.append(
        f"one cycle of {len(LENGTH_STEPS)} lengths (bench shape, +-16, -32 tokens a side), best step per length "
        "summed; forward + loss + backward + fused AdamW; graphs: compiled over warm-up and timed steps."
    )
    return table
