"""Training memory after the forward pass and loss: the path as the memory goal was filed against ours now.

What a training step holds after its forward pass and loss, before the backward, measured four ways on our
model at the bench shape, through the trainer's own `micro_batch_loss`:

- filed: full logits and `token_loss_sum`, every activation stored (`model.recompute_pointwise=false`): the
  training path when the memory goal was set (less one copy of qkv per self-attention, now never kept);
- full: the same logits with `model.recompute_pointwise` (the default): GELU and norm outputs and autocast
  weight copies recomputed in the backward instead of stored;
- chunked: with it, the final hidden states and the chunked loss, `CHUNK_ROWS` rows at a time (4 chunks at
  512 rows): the path of batches over `trainer.loss_chunk_tokens` rows;
- floor: the forward to the hidden states alone (pointwise recompute on), no head and no loss.

Each is the growth of allocated bytes (`memory.allocated`: glibc's in-use bytes on CPUs, the CUDA allocator's
on GPUs) and, allocator-free, the bytes of the distinct storages autograd saved for the backward
(`saved_tensors_hooks`; parameters excluded, and the checkpoint's inputs, views it holds itself, not seen).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import torch

from enhanced_tx.bench.batch import make_batch
from enhanced_tx.bench.memory import allocated
from enhanced_tx.bench.peers import build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.table import Table, fmt
from enhanced_tx.data.collate import Batch
from enhanced_tx.training.step_loss import micro_batch_loss

CHUNK_ROWS = 128
MB = 2.0**20


@dataclass
class LossMemoryResult:
    size: str
    dtype: str
    chunk_rows: int
    full_mb: float  # allocated after forward + loss, full logits, pointwise recompute on
    chunked_mb: float  # the same, chunked loss
    floor_mb: float  # the forward to the hidden states only
    full_saved_mb: float  # bytes saved for the backward, full logits
    chunked_saved_mb: float
    full_step_s: float | None = None  # one forward + loss + backward, after a warm-up (indicative)
    chunked_step_s: float | None = None
    filed_mb: float | None = None  # full logits, every activation stored (None: a result from before it)
    filed_step_s: float | None = None

    @property
    def baseline_mb(self) -> float:
        return self.full_mb if self.filed_mb is None else self.filed_mb

    @property
    def ratio(self) -> float:
        """Chunked loss with pointwise recompute over the path as filed."""
        return self.chunked_mb / self.baseline_mb

    @property
    def floor_ratio(self) -> float:
        """The best ratio any loss could reach with the model as it is: no head and no loss at all."""
        return self.floor_mb / self.baseline_mb


def _train_batch(shape: Shape, device: torch.device) -> Batch:
    b = make_batch(shape, device)  # no padding, no source mask: the batch of the memory section's other rows
    return Batch(src=b.src, src_mask=None, tgt_in=b.tgt_in, labels=b.labels)


def _after_forward(model, batch: Batch, dtype: str, device: torch.device, chunk: int | None, floor: bool):  # noqa: ANN001, ANN202
    """(allocated bytes, saved bytes, seconds of forward + loss + backward) of one step."""
    model.zero_grad(set_to_none=True)
    gc.collect()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    before = allocated(device)
    started = time.perf_counter()
    with (
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        if floor:
            loss = model(batch.src, batch.tgt_in, batch.src_mask, hidden=True).float().sum()
        else:
            loss, _ = micro_batch_loss(model, model, batch, chunk_tokens=chunk)
    after = allocated(device)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    if before is None or after is None:
        raise RuntimeError("no allocator statistics on this platform")
    return after - before, sum(saved.values()), seconds


def measure_loss_memory(shape: Shape, dtype: str, device: torch.device, linear_backend: str) -> LossMemoryResult:
    model = build_ours(shape, linear_backend=linear_backend).model.to(device).train()
    batch = _train_batch(shape, device)
    figures = {}
    runs = (("filed", None, False, False), ("full", None, False, True), ("chunked", CHUNK_ROWS, False, True))
    for name, chunk, floor, recompute in (*runs, ("floor", None, True, True)):
        model.recompute_pointwise = recompute
        _after_forward(model, batch, dtype, device, chunk, floor)  # warm-up: lazy buffers, allocator caches
        figures[name] = _after_forward(model, batch, dtype, device, chunk, floor)
    model.recompute_pointwise = True
    (full, full_saved, full_s), (chunked, chunked_saved, chunked_s) = figures["full"], figures["chunked"]
    return LossMemoryResult(
        size=shape.name,
        dtype=dtype,
        chunk_rows=CHUNK_ROWS,
        full_mb=full / MB,
        chunked_mb=chunked / MB,
        floor_mb=figures["floor"][0] / MB,
        full_saved_mb=full_saved / MB,
        chunked_saved_mb=chunked_saved / MB,
        full_step_s=full_s,
        chunked_step_s=chunked_s,
        filed_mb=figures["filed"][0] / MB,
        filed_step_s=figures["filed"][2],
    )


def loss_memory_table(rows: list[LossMemoryResult]) -> Table:
    columns = ["size", "dtype", "filed MB", "full MB", f"chunked ({CHUNK_ROWS} rows) MB", "chunked / filed"]
    columns += ["floor MB", "floor / filed", "saved MB full", "saved MB chunked", "step s filed", "step s chunked"]
    table = Table("Training memory after forward + loss: as filed vs pointwise recompute and chunked loss (ours)",
                  columns)  # fmt: skip
    for r in rows:
        table.add(r.size, r.dtype, fmt(r.filed_mb), fmt(r.full_mb), fmt(r.chunked_mb), f"{r.ratio:.2f}x",
                  fmt(r.floor_mb), f"{r.floor_ratio:.2f}x", fmt(r.full_saved_mb), fmt(r.chunked_saved_mb),
                  fmt(r.filed_step_s, 2), fmt(r.chunked_step_s, 2))  # fmt: skip
    table.notes.append(
        "allocated bytes the step holds before its backward, parameters excluded (filed: full logits, every "
        "activation stored, model.recompute_pointwise=false; full: the same logits, pointwise recompute on; "
        "chunked: and trainer.loss_chunk_tokens; floor: the hidden states alone, no head, no loss); saved MB: "
        "storages autograd keeps as they are for the backward; step s: one forward + loss + backward after a "
        "warm-up (indicative)."
    )
    return table
