"""Pointwise activations recomputed in the backward instead of stored (`model.recompute_pointwise`).

A training forward keeps, for the backward, the input of every matmul. Several of those inputs are cheap
functions of tensors the backward keeps anyway: a GELU's output (its input is saved by the GELU itself),
a norm's output (its input is saved by the norm), and under autocast the bf16 copy of each fp32 weight (the
weight is a parameter). Inside `pointwise_recompute()`, a tensor marked with `recomputable(out, fn, *inputs)`
is not stored when an op saves it: a recipe (fn and its inputs) is, and the backward calls `fn` again.
No matmul is recomputed (that is what gradient checkpointing does): the extra work is one elementwise pass
per marked tensor. The values are bit-identical: the same op on the same input.

Safe by construction: a tensor is replaced only while it is alive and unchanged since it was marked (its
storage, version and layout match), outer saved-tensor hooks (profilers, memory probes) still see every
tensor kept as is, and nothing is marked while torch.compile traces. The model turns it off under gradient
checkpointing, whose own hooks keep only each block's inputs.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

_local = threading.local()


@dataclass
class _Marked:
    ref: weakref.ref
    version: int
    fn: Callable[..., Tensor]
    inputs: tuple[Tensor, ...]
    autocast: tuple[str, bool, torch.dtype]  # device type, enabled, dtype: restored for the recomputation


@dataclass
class _Recipe:
    marked: _Marked
    size: torch.Size
    stride: tuple[int, ...]
    offset: int


def active() -> bool:
    """Whether tensors marked now would be recomputed (inside `pointwise_recompute()`, not tracing)."""
    return not torch.compiler.is_compiling() and getattr(_local, "marked", None) is not None


def recomputable(out: Tensor, fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    """Mark `out`, computed as `fn(*inputs)`, as recomputable; returns `out`. A no-op outside the context."""
    if torch.compiler.is_compiling():  # first: dynamo traces no thread-local state
        return out
    marked = getattr(_local, "marked", None)
    if marked is None or not out.is_contiguous() or out.storage_offset():
        return out
    device = out.device.type
    state = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
    marked[out.untyped_storage().data_ptr()] = _Marked(weakref.ref(out), out._version, fn, inputs, state)
    return out


def _recipe_for(marked: dict[int, _Marked], t: Tensor) -> _Recipe | None:
    entry = marked.get(t.untyped_storage().data_ptr())
    if entry is None:
        return None
    out = entry.ref()  # alive: the op saving `t` is running on it or on a view of it
    if out is None or out._version != entry.version or t.dtype != out.dtype:
        return None
    return _Recipe(entry, t.size(), t.stride(), t.storage_offset())


def _recompute(recipe: _Recipe) -> Tensor:
    device, enabled, dtype = recipe.marked.autocast
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
        full = recipe.marked.fn(*recipe.marked.inputs)
    return full.as_strided(recipe.size, recipe.stride, recipe.offset)


@contextlib.contextmanager
def pointwise_recompute(enabled: bool = True) -> Iterator[None]:
    """Within: tensors marked `recomputable` are recomputed in the backward instead of saved."""
    if not enabled or torch.compiler.is_compiling() or getattr(_local, "marked", None) is not None:
        yield  # off, nested (the outer context serves), or tracing
        return
    outer = torch._C._autograd._top_saved_tensors_default_hooks(False)  # e.g. a profiler's or a checkpoint's
    outer_pack, outer_unpack = outer if outer is not None else (None, None)
    marked: dict[int, _Marked] = {}

    def pack(t: Tensor) -> object:
        recipe = _recipe_for(marked, t)
        if recipe is not None:
            return recipe
        return (outer_pack(t),) if outer_pack is not None else t

    def unpack(packed: object) -> Tensor:
        if isinstance(packed, _Recipe):
            return _recompute(packed)
        if isinstance(packed, tuple):
            return outer_unpack(packed[0])
        return packed

    _local.marked = marked
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield
    finally:
        _local.marked = None


def low_precision_weight(weight: Tensor) -> Tensor:
    """Under autocast (bf16/fp16) inside the context: the weight's autocast copy, marked recomputable, so the
    backward casts again instead of keeping one copy of every weight; otherwise `weight` itself."""
    device = weight.device.type
    if not active() or weight.dtype != torch.float32 or not torch.is_autocast_enabled(device):
        return weight
    dtype = torch.get_autocast_dtype(device)
    return recomputable(weight.to(dtype), _cast_to(dtype), weight)


def _cast_to(dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    return lambda w: w.to(dtype)
