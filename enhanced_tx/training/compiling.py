"""Compiled training without recompiles: `trainer.compile`, `trainer.compile_pad_to`, `trainer.compile_backend`.

Three parts (issue 21):

- Batch lengths padded to a few buckets in collation (`PaddedCollator`): multiples of N, or powers of two
  from 16. Padding is what the loss already ignores (labels -100, src_mask false, pad tokens after the real
  ones in a causal decoder), so the loss and gradients stay those of the unpadded batch; no bucket is
  ever shorter than 16, so no length-1 dimension makes the compiler specialise.
- Each encoder and decoder block compiled on its own (torchtitan's choice, `CompiledBlocks`): blocks of one
  class share their graphs (parameters are graph inputs), so an L-layer stack compiles what one block
  does, and the loss, the head and the chunked-loss switch stay eager. The compiled blocks are installed
  only inside training steps: evaluation, generation and weight saving run the plain modules (no graphs
  for no-grad or cached decoding, nothing compiled inside a deepcopy).
- Compilations counted (dynamo's `unique_graphs` since the run started) into `perf/compilations` and the
  run summary, with a warning when they pass `RECOMPILE_WARNING`. Dynamo's automatic dynamic shapes mark
  a length dynamic the first time it changes, so a run over many lengths settles at about two graphs per
  block class (one static, one dynamic), plus their backward graphs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from enhanced_tx.data.collate import IGNORE_INDEX, Batch

PadTo = int | str | None
MIN_BUCKET = 16  # the shortest bucket: never a length-1 dimension (the compiler specialises on 0 and 1)
RECOMPILE_WARNING = 8  # more compilations than this in one run: a recompile storm (and dynamo's limit is 8)


def resolve_pad_to(pad_to: PadTo, compiling: bool) -> int | str | None:
    """What collation pads to: "auto" is multiples of 16 when compiling and no padding otherwise."""
    if pad_to == "auto":
        return MIN_BUCKET if compiling else None
    return pad_to


def bucket_length(length: int, pad_to: int | str | None, cap: int | None = None) -> int:
    """`length` rounded up to its bucket (a multiple of `pad_to`, or a power of two >= 16), at most `cap`
    (the model's max_seq_len: a position table has no rows beyond), and never below `length`."""
    if pad_to is None:
        return length
    if pad_to == "pow2":
        bucket = max(MIN_BUCKET, 1 << max(0, length - 1).bit_length())
    else:
        bucket = max(MIN_BUCKET, -(-length // int(pad_to)) * int(pad_to))
    return max(length, bucket if cap is None else min(bucket, cap))


def pad_batch(batch: Batch, src_len: int, tgt_len: int, pad_id: int) -> Batch:
    """`batch` widened to (src_len, tgt_len) with what the loss ignores: pad tokens, src_mask false, labels -100."""
    ds, dt = src_len - batch.src.shape[1], tgt_len - batch.tgt_in.shape[1]
    return Batch(
        src=F.pad(batch.src, (0, ds), value=pad_id),
        src_mask=F.pad(batch.src_mask, (0, ds), value=False),
        tgt_in=F.pad(batch.tgt_in, (0, dt), value=pad_id),
        labels=F.pad(batch.labels, (0, dt), value=IGNORE_INDEX),
    )


class PaddedCollator:
    """A collator whose batches have bucketed lengths: a handful of shapes for the compiler to see."""

    def __init__(self, collator: Callable[[list[dict]], Batch], pad_to: int | str, max_len: int | None) -> None:
        self.collator, self.pad_to, self.max_len = collator, pad_to, max_len
        self.pad_id = getattr(collator, "pad_id", 0)  # any id does: padded positions are masked or ignored

    def __call__(self, items: Sequence[dict]) -> Batch:
        batch = self.collator(items)
        src_len = bucket_length(batch.src.shape[1], self.pad_to, self.max_len)
        tgt_len = bucket_length(batch.tgt_in.shape[1], self.pad_to, self.max_len)
        return pad_batch(batch, src_len, tgt_len, self.pad_id)


def compilations() -> int:
    """Graphs dynamo has compiled in this process (each first compile and each recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompiledBlocks:
    """Every encoder and decoder block of `model` compiled on its own, active inside `active()` only.

    `nn.Module.compile` sets the module's compiled call; it is kept here and set on the blocks only for the
    training step (forward, and backward where gradient checkpointing recomputes a block)."""

    def __init__(self, model: nn.Module, backend: str = "inductor", enabled: bool = True) -> None:
        self.enabled = enabled
        self.blocks = [*model.encoder_layers, *model.decoder_layers] if enabled else []
        self.calls: list[Any] = []
        for block in self.blocks:
            block.compile(backend=backend)  # dynamic=None: automatic dynamic shapes after the first change
            self.calls.append(_dynamic_lengths(block._compiled_call_impl))
            block._compiled_call_impl = None
        self.start = compilations()
        self.warned = False

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Blocks compiled inside; plain again after, even on an error."""
        if not self.enabled:
            yield
            return
        for block, call in zip(self.blocks, self.calls, strict=True):
            block._compiled_call_impl = call
        try:
            yield
        finally:
            for block in self.blocks:
                block._compiled_call_impl = None
        self._warn_on_storm()

    @property
    def count(self) -> int:
        """Graphs compiled since this run started (0 when not compiling)."""
        return compilations() - self.start if self.enabled else 0

    def metrics(self) -> dict[str, int]:
        return {"perf/compilations": self.count} if self.enabled else {}

    def _warn_on_storm(self) -> None:
        if not self.warned and self.count > RECOMPILE_WARNING:
            self.warned = True
            warnings.warn(
                f"torch.compile compiled {self.count} graphs in this run (more than {RECOMPILE_WARNING}): "
                "shapes keep changing; set trainer.compile_pad_to=16 or pow2, or run with "
                "TORCH_LOGS=recompiles to see which guard fails",
                RuntimeWarning,
                stacklevel=4,  # the step's `with`
            )


def _dynamic_lengths(call: Callable) -> Callable:
    """`call` with its inputs' batch and length dimensions marked dynamic before dynamo sees them: the first
    graph is already the general one (no static graph first, then a recompile at the first new length)."""

    def marked(*args: Any, **kwargs: Any) -> Any:
        for x in (*args, *kwargs.values()):
            if isinstance(x, torch.Tensor) and x.dim() == 3:  # (B, T, D) hidden states, (B, S, D) memory
                torch._dynamo.maybe_mark_dynamic(x, 0)
                torch._dynamo.maybe_mark_dynamic(x, 1)
            elif isinstance(x, torch.Tensor) and x.dim() == 4:  # (B, 1, 1, S) key mask
                torch._dynamo.maybe_mark_dynamic(x, 0)
                torch._dynamo.maybe_mark_dynamic(x, 3)
        return call(*args, **kwargs)

    return marked


def check_compile_settings(pad_to: Any, backend: Any, compiling: bool) -> list[str]:
    """Problems with trainer.compile_pad_to / trainer.compile_backend (checked when compiling), one line each."""
    problems = []
    ok = pad_to in (None, "auto", "pow2") or (isinstance(pad_to, int) and not isinstance(pad_to, bool) and pad_to >= 1)
    if not ok:
        problems.append(
            f"trainer.compile_pad_to={pad_to} must be auto (16 when compiling), a positive multiple such as 16, "
            "pow2, or null (no padding)"
        )
    if not compiling:
        return problems
    if not isinstance(backend, str) or not backend:
        problems.append(f"trainer.compile_backend={backend} must name a torch.compile backend (inductor, aot_eager)")
    elif backend not in torch._dynamo.list_backends(exclude_tags=()):
        problems.append(
            f"trainer.compile_backend={backend} is not a torch.compile backend; use one of "
            f"{', '.join(torch._dynamo.list_backends())}"
        )
    return problems
