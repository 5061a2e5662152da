"""Bias-free linear layers with a selectable matrix-multiply backend for CPUs.

`backend="auto"` (the model's default) is the fastest choice for the tensors at hand: on CPUs, fp32 matmuls
outside `packed_weights()` take whichever of `"onednn"` and `"default"` measured faster for the weight's shape
on this machine (`linear_choice`: timed once, cached per machine); decoding inside `packed_weights()` takes
whichever of `F.linear` and oneDNN with packed weights measured faster for the weight's shape and the number
of rows (`linear_choice.choose_inference`; packed from a weight's second use in the block on); a compiled
decode step (`generate(compile=True)`) makes the same choice when its graph is traced and calls the packed
matmul as a custom op; everything else (GPUs, autocast, compiled training) takes `F.linear`.

`backend="default"` is `F.linear`: PyTorch's own dispatch (MKL sgemm for fp32 on x86 CPUs, oneDNN for
bf16, cuBLAS on GPUs).

`backend="onednn"` routes CPU matmuls through oneDNN (`torch.ops.mkldnn._linear_pointwise`), whose
kernels use AVX-512 on CPUs where MKL falls back to its AVX2 code path (AMD EPYC):

- training, fp32: the forward and the input gradient in oneDNN; the weight gradient (grad_y^T @ x, both
  operands transposed) stays with MKL, which handles transposed operands without copies.
- inference inside `packed_weights()` (as in `generate()`), fp32 or bf16 weights (bf16 where oneDNN packs it:
  `packable_dtypes`): oneDNN with each weight prepacked once into oneDNN's blocked layout. On an AMD EPYC
  matrix-vector products of incremental decoding run about 2x faster than with MKL; on an Intel Xeon one row
  is faster with MKL and 5-40 rows (beams) 1.5-2.3x faster packed, hence "auto" measures. The packed copies
  live only until the outermost `packed_weights()` exits, so they never outlive the weights they copy:
  optimizer steps (the fused AdamW updates in place without bumping a tensor's version) happen outside, and
  the extra memory is returned after each generate().
  Elsewhere in inference mode fp32 weights take oneDNN unpacked.

oneDNN changes only the summation order of the products: results agree with the default to fp32
rounding (relative error ~1e-6), not bit for bit. Where the fast path does not apply (GPU tensors,
autocast, fp16, compiled training) the layer is `F.linear`, so the option is safe everywhere.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhanced_tx.model.linear_choice import choose, choose_inference
from enhanced_tx.model.recompute import low_precision_weight

LINEAR_BACKENDS = ("auto", "default", "onednn")
_ONEDNN_BACKENDS = ("auto", "onednn")
# backend="onednn" in inference: weights below this size stay in the cache between calls, where oneDNN's fixed
# cost per call (~15 us) outweighs its faster inner loop: they take F.linear. ("auto" measures instead.)
_SMALL_WEIGHT_BYTES = 1 << 20


def _onednn_mm(x: Tensor, weight: Tensor) -> Tensor:
    """x [..., K] @ weight [N, K]^T -> [..., N]; `weight` may be a transposed view or a packed weight."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _OnednnLinear(torch.autograd.Function):
    """y = x @ W^T for training: forward and input gradient in oneDNN, weight gradient in MKL."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor) -> Tensor:
        y = _onednn_mm(x.reshape(-1, x.shape[-1]), weight)  # (M, N)
        # not .view: a view made inside a custom Function cannot be edited in place later (logits masking),
        # and FSDP2 warns about modules that return views. _unsafe_view is what F.linear itself returns.
        return torch.ops.aten._unsafe_view(y, (*x.shape[:-1], weight.shape[0]))

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        x, weight = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_y2 = grad_y.reshape(-1, grad_y.shape[-1]).contiguous()  # (M, N)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_mm(grad_y2, weight.t()).view(x.shape)  # (M, N) @ (N, K)
        if ctx.needs_input_grad[1]:
            grad_w = grad_y2.t().mm(x.reshape(-1, x.shape[-1]))  # (N, M) @ (M, K)
        return grad_x, grad_w


_CANDIDATES = {"default": F.linear, "onednn": lambda x, weight: _OnednnLinear.apply(x.contiguous(), weight)}

# Per thread: id(weight) -> (weak reference to the weight, (storage pointer, version, dtype, shape), packed copy),
# filled only inside that thread's `packed_weights()` and emptied when its outermost one exits. Per thread, so
# one thread generating never hands its packed copies to another thread's forward passes (which may train).
_local = threading.local()


def _packing_depth() -> int:
    return getattr(_local, "depth", 0)


def _packed_cache() -> dict[int, tuple[weakref.ref, tuple, Tensor]]:
    if not hasattr(_local, "packed"):
        _local.packed = {}
    return _local.packed


@contextlib.contextmanager
def packed_weights() -> Iterator[None]:
    """Within (this thread): inference-mode linears on CPU use oneDNN-packed copies of their weights.

    The weights must not change inside (one generate() call). On exit of the outermost block the copies are
    dropped: an in-place update that keeps the tensor's version (fused optimizers) can never be served a stale
    copy, and the memory is returned.
    """
    _local.depth = _packing_depth() + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            _packed_cache().clear()
            _seen().clear()


def _seen() -> set[int]:
    """ids of the weights this thread's outermost packed_weights() block has multiplied by so far."""
    if not hasattr(_local, "seen"):
        _local.seen = set()
    return _local.seen


def _used_before(weight: Tensor) -> bool:
    """False on a weight's first matmul in the block (and marks it): packing costs 10-25 matmuls of a few rows,
    so a weight used once per generate() (the encoder's, the cross-attention key/value projections) is not
    worth packing; a decoder weight is packed at its second step and reused every step after."""
    seen = _seen()
    if id(weight) in seen:
        return True
    seen.add(id(weight))
    return False


def _packed(weight: Tensor) -> Tensor:
    """The oneDNN-packed copy of `weight`, made on first use and again whenever the weight changed."""
    cache = _packed_cache()
    key = (weight.data_ptr(), weight._version, weight.dtype, tuple(weight.shape))
    entry = cache.get(id(weight))
    if entry is None or entry[0]() is not weight or entry[1] != key:
        ident = id(weight)

        def forget(ref: weakref.ref, ident: int = ident) -> None:  # the weight was garbage-collected
            if ident in cache and cache[ident][0] is ref:
                del cache[ident]

        ref = weakref.ref(weight, forget)
        entry = (ref, key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        cache[ident] = entry
    return entry[2]


def _packed_mm(x: Tensor, weight: Tensor) -> Tensor:
    return _onednn_mm(x.contiguous(), _packed(weight))


def _prepare_packed(weight: Tensor) -> Callable[[Tensor], Tensor]:
    packed = torch.ops.mkldnn._reorder_linear_weight(weight)
    return lambda x: _onednn_mm(x, packed)


# What choose_inference measures: a weight -> its matmul (packing a copy first, as decoding does)
INFERENCE_CANDIDATES = {"default": lambda weight: lambda x: F.linear(x, weight), "onednn_packed": _prepare_packed}


_MKLDNN = torch.backends.mkldnn.is_available()


def packable_dtypes(reorder: Callable[[Tensor], Tensor] | None = None) -> frozenset[torch.dtype]:
    """The weight dtypes oneDNN packs on this CPU, found by packing a small weight of each: bf16 packing needs
    AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT and raises on an AVX2-only CPU (an AMD EPYC without AVX-512), where
    bf16 weights then take F.linear. `reorder` replaces oneDNN's packing (tests)."""
    if not _MKLDNN:
        return frozenset()
    reorder = reorder or torch.ops.mkldnn._reorder_linear_weight
    found = set()
    for dtype in (torch.float32, torch.bfloat16):
        try:
            reorder(torch.zeros(8, 8, dtype=dtype))
        except RuntimeError:
            continue
        found.add(dtype)
    return frozenset(found)


_PACKED_DTYPES = packable_dtypes()  # once per process: the CPU does not change under it


def _on_cpu(x: Tensor, weight: Tensor) -> bool:
    return _MKLDNN and x.device.type == "cpu" and x.dtype == weight.dtype and not torch.is_autocast_enabled("cpu")


@torch.library.custom_op("enhanced_tx::packed_linear", mutates_args=())
def _packed_linear_op(x: Tensor, weight: Tensor) -> Tensor:
    """The packed oneDNN matmul as one opaque op, so that a compiled graph can call it (torch.compile cannot
    trace oneDNN's packed layout); F.linear outside a packed_weights() block (where no copy may be kept) and for
    inference tensors (which have no version to key a copy by)."""
    if not _packing_depth() or weight.is_inference():
        return F.linear(x, weight)
    return _packed_mm(x, weight)


@_packed_linear_op.register_fake
def _(x: Tensor, weight: Tensor) -> Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _inference_choice(k: int, n: int, dtype: torch.dtype, rows: int) -> str:
    """`choose_inference` over this module's candidates; in a compiled graph (after `pack_in_compiled_graphs`)
    it runs when the graph is traced (it may measure) and its answer is fixed in the graph."""
    return choose_inference(k, n, dtype, rows, INFERENCE_CANDIDATES)


def _packs(weight: Tensor, rows: int, backend: str) -> bool:
    """Whether an inference matmul of `rows` rows packs `weight`: "auto" as measured, "onednn" by size."""
    if backend == "auto":
        (n, k) = weight.shape
        return _inference_choice(k, n, weight.dtype, rows) == "onednn_packed"
    return weight.numel() * weight.element_size() >= _SMALL_WEIGHT_BYTES


_packed_in_graphs = False  # set by pack_in_compiled_graphs()


def pack_in_compiled_graphs() -> None:
    """From now on compiled inference graphs call the packed op where the eager rule packs (the compiled decode
    step calls this before compiling). Not done at import: marking the choice a constant imports torch._dynamo,
    1.3 s of every command's start."""
    global _packed_in_graphs
    torch.compiler.assume_constant_result(_inference_choice)  # marks the function itself
    _packed_in_graphs = True


def _compiled_linear(x: Tensor, weight: Tensor, backend: str) -> Tensor:
    """Inside torch.compile: inference matmuls the eager rule would pack call the packed op; the rest F.linear.

    The row count must be static in the graph (the compiled decode step marks the batch static)."""
    rows = x.numel() // max(x.shape[-1], 1)
    if (
        _packed_in_graphs
        and backend in _ONEDNN_BACKENDS
        and _MKLDNN
        and x.device.type == "cpu"
        and x.dtype == weight.dtype
        and weight.dtype in _PACKED_DTYPES
        and not torch.is_grad_enabled()  # dynamo cannot read inference mode; the op checks the rest when it runs
        and not torch.is_autocast_enabled("cpu")
        and isinstance(rows, int)
        and _packs(weight, rows, backend)
    ):
        return _packed_linear_op(x, weight)
    return F.linear(x, weight)


def linear(x: Tensor, weight: Tensor, backend: str = "default") -> Tensor:
    """`F.linear(x, weight)` (no bias) through the chosen backend."""
    if torch.compiler.is_compiling():
        return _compiled_linear(x, weight, backend)
    if backend in _ONEDNN_BACKENDS and _on_cpu(x, weight):
        packable = weight.dtype in _PACKED_DTYPES and not weight.is_inference()
        if packable and _packing_depth() and torch.is_inference_mode_enabled():
            rows = x.numel() // max(x.shape[-1], 1)
            # "auto" packs a weight from its second use in the block on (`_used_before`)
            if not _packs(weight, rows, backend) or (backend == "auto" and not _used_before(weight)):
                return F.linear(x, weight)
            return _packed_mm(x, weight)
        if weight.dtype == torch.float32:
            if backend == "auto" and choose(weight.shape[1], weight.shape[0], weight.dtype, _CANDIDATES) == "default":
                return F.linear(x, weight)
            if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
                return _OnednnLinear.apply(x.contiguous(), weight)
            return _onednn_mm(x.contiguous(), weight)
    return F.linear(x, weight)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters and state dict) whose bias-free matmul honours `self.backend`.

    The model sets `backend` on every instance (`EncoderDecoder(linear_backend=...)`).
    """

    backend: str = "default"

    def forward(self, x: Tensor) -> Tensor:
        # One attribute read each and no recompute checks without autograd: 2 us less a decoding call (6.4
        # against 8.5 us for a 16x16 weight in inference mode; F.linear alone 2.9 us)
        weight, bias = self.weight, self.bias
        if not torch.is_grad_enabled():  # no recompute context without autograd: skip its checks
            return linear(x, weight, self.backend) if bias is None else F.linear(x, weight, bias)
        low = low_precision_weight(weight)  # under autocast in training: recast in the backward, not kept
        if low is not weight or bias is not None:
            return F.linear(x, low, bias)
        return linear(x, weight, self.backend)
