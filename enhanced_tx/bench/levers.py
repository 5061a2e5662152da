"""One measured A/B per performance lever, on our model only, each against its own baseline in the same run.

A lever's baseline is the same model with that one optimisation switched off: a setting (GEMM backend,
AdamW implementation, host sync, checkpointing, compile) or, for the optimisations built into the model, an
ablation that restores the straightforward code during the forward pass (materialised causal masks, RoPE
through autograd, bf16 attention kernels). Variants run as interleaved copies of one set of weights.
Op-level levers (fused QKV projection, the optimizer step alone) time the operation itself.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor

import enhanced_tx.model.attention as attention_module
import enhanced_tx.model.norm as norm_module
from enhanced_tx.bench.allocator import allocator_ab
from enhanced_tx.bench.generation import Runner, generator_for, measure_generation
from enhanced_tx.bench.peers import OURS, Contender, build_ours
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.timing import QUIET, Samples, time_once
from enhanced_tx.bench.training import OPTIMIZERS, TrainOptions, build_optimizer, measure_training
from enhanced_tx.model.positional import RotaryEmbedding, textbook_rotate

Ablation = Callable[[], contextlib.AbstractContextManager]


@dataclass
class LeverResult:
    lever: str
    size: str
    setting: str
    metric: str
    value: float
    baseline: float  # the same metric without the lever

    @property
    def effect(self) -> float:
        """Speed-up factor of the setting over the baseline (>1 = it helps)."""
        return self.value / self.baseline


# ---------------------------------------------------------------- ablations: the code before each lever
@contextlib.contextmanager
def materialised_causal_masks() -> Iterator[None]:
    """Every `is_causal=True` SDPA call builds and passes an explicit [T, S] boolean mask instead."""
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):  # noqa: ANN001
        if is_causal:
            causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            attn_mask = causal if attn_mask is None else attn_mask & causal
        return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=False, **kwargs)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _textbook_rotate(self: RotaryEmbedding, q: Tensor, k: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
    t = q.shape[-2]
    cos = self.cos[offset : offset + t].to(q.dtype)
    sin = self.sin[offset : offset + t].to(q.dtype)
    return textbook_rotate(q, cos, sin), textbook_rotate(k, cos, sin)


def autograd_rope() -> contextlib.AbstractContextManager:
    """RoPE as the textbook formula through autograd (chunk, four products, cat) instead of `_Rotate`."""
    return mock.patch.object(RotaryEmbedding, "rotate", _textbook_rotate)


def low_precision_attention() -> contextlib.AbstractContextManager:
    """SDPA in the tensors' own dtype (bf16 kernels on the CPU) instead of upcasting to fp32."""
    return mock.patch.object(attention_module, "attention", F.scaled_dot_product_attention)


def autograd_rms_norm() -> contextlib.AbstractContextManager:
    """RMSNorm through `F.rms_norm`'s autograd (on CPUs its decomposition) instead of `_RMSNormFunction`."""
    return mock.patch.object(norm_module, "_fused_rms_norm_applies", lambda x, weight: False)


# ---------------------------------------------------------------- helpers
def _copy(contender: Contender, ablation: Ablation | None = None) -> Contender:
    """A copy of the weights; with an ablation, its forward runs inside it (backward follows the graph)."""
    model = copy.deepcopy(contender.model)

    def logits(src: Tensor, tgt: Tensor) -> Tensor:
        with ablation() if ablation else contextlib.nullcontext():
            return model(src, tgt)

    return Contender(OURS, model, logits, contender.flops_per_token)


def _with_linear_backend(contender: Contender, backend: str) -> Contender:
    c = _copy(contender)
    c.model.set_linear_backend(backend)
    return c


def _train_ab(
    shape: Shape, dtype: str, steps: int, device: torch.device, variants: dict[str, tuple[Contender, TrainOptions]]
) -> dict[str, float]:
    # The copies of the previous A/B sit in reference cycles the collector rarely reaches on its own: without
    # this each small-model A/B left ~3 GB behind and the small levers ran out of 24 GB (VmRSS, 2026-12-04)
    gc.collect()
    labels = list(variants)
    results = measure_training(
        shape,
        [variants[label][0] for label in labels],
        dtype,
        steps,
        device,
        options=[variants[label][1] for label in labels],
        labels=labels,
    )
    return {r.model: r.tokens_per_s for r in results}


def _pairs(lever: str, shape: Shape, metric: str, values: dict[str, float], baseline: str) -> list[LeverResult]:
    return [
        LeverResult(lever, shape.name, label, metric, value, values[baseline])
        for label, value in values.items()
        if label != baseline
    ]


def _time_best(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()
    samples = Samples()
    for _ in range(repeats):
        samples.add(time_once(fn, device))
    return samples.best


# ---------------------------------------------------------------- op-level levers
def fused_projection_lever(shape: Shape, device: torch.device, repeats: int) -> list[LeverResult]:
    """Q, K, V as one [3D, D] matmul against three [D, D] ones, forward + backward."""
    d, m = shape.d_model, shape.batch * shape.src_len
    x = torch.randn(m, d, device=device, requires_grad=True)
    fused = torch.randn(3 * d, d, device=device, requires_grad=True)
    split = [torch.randn(d, d, device=device, requires_grad=True) for _ in range(3)]
    grad = torch.randn(m, 3 * d, device=device)
    fused_s = _time_best(lambda: F.linear(x, fused).backward(grad), device, repeats)
    split_s = _time_best(lambda: torch.cat([F.linear(x, w) for w in split], dim=-1).backward(grad), device, repeats)
    return [
        LeverResult("fused QKV projection (op)", shape.name, "1 matmul vs 3", "fwd+bwd/s", 1 / fused_s, 1 / split_s)
    ]


def optimizer_step_lever(contender: Contender, shape: Shape, device: torch.device, repeats: int) -> list[LeverResult]:
    """AdamW's step alone (gradients filled with noise), per implementation, against the Python loop."""
    values = {}
    for kind in OPTIMIZERS:
        model = copy.deepcopy(contender.model)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = build_optimizer(model, kind)
        values[f"AdamW {kind}"] = 1 / _time_best(optimizer.step, device, repeats)
        del model, optimizer
    return _pairs("AdamW implementation (step alone)", shape, "steps/s", values, "AdamW loop")


# ---------------------------------------------------------------- training levers
def training_levers(
    shape: Shape, steps: int, device: torch.device, compile: bool, linear_backend: str, optimizer: str
) -> list[LeverResult]:
    ours = build_ours(shape, linear_backend=linear_backend)
    ours.model.to(device)
    opts = TrainOptions(optimizer=optimizer)
    out: list[LeverResult] = []

    def ab(lever: str, dtype: str, lever_on: tuple[str, Contender, TrainOptions], baseline: tuple) -> None:
        values = _train_ab(shape, dtype, steps, device, {lever_on[0]: lever_on[1:], baseline[0]: baseline[1:]})
        out.extend(_pairs(lever, shape, f"train tok/s {dtype}", values, baseline[0]))

    if device.type == "cpu":
        ab("fp32 GEMM backend", "fp32", ("oneDNN", _with_linear_backend(ours, "onednn"), opts),
           ("MKL (default)", _with_linear_backend(ours, "default"), opts))  # fmt: skip
    for kind in ("foreach", "fused"):
        ab("AdamW implementation (whole step)", "fp32", (f"AdamW {kind}", _copy(ours), TrainOptions(optimizer=kind)),
           ("AdamW loop", _copy(ours), TrainOptions(optimizer="loop")))  # fmt: skip
    out += optimizer_step_lever(ours, shape, device, repeats=5)
    ab("no host sync per step", "fp32", ("no sync", _copy(ours), opts),
       ("loss.item() every step", _copy(ours), TrainOptions(optimizer=optimizer, sync_every_step=True)))  # fmt: skip
    ab("SDPA is_causal (no mask tensor)", "fp32", ("is_causal", _copy(ours), opts),
       ("materialised mask", _copy(ours, materialised_causal_masks), opts))  # fmt: skip
    ab("RoPE as one autograd Function", "fp32", ("_Rotate", _copy(ours), opts),
       ("textbook, autograd", _copy(ours, autograd_rope), opts))  # fmt: skip
    for dtype in ("fp32", "bf16"):
        ab("RMSNorm: fused forward, analytic backward", dtype, ("_RMSNormFunction", _copy(ours), opts),
           ("F.rms_norm autograd", _copy(ours, autograd_rms_norm), opts))  # fmt: skip
    if device.type == "cpu":
        ab("attention in fp32 under bf16 autocast", "bf16", ("fp32 SDPA", _copy(ours), opts),
           ("bf16 SDPA", _copy(ours, low_precision_attention), opts))  # fmt: skip
    out += fused_projection_lever(shape, device, repeats=10)
    checkpointed = _copy(ours)
    checkpointed.model.set_gradient_checkpointing(True)
    ab("gradient checkpointing (its cost)", "fp32", ("checkpointing", checkpointed, opts),
       ("no checkpointing", _copy(ours), opts))  # fmt: skip
    del checkpointed
    for dtype in ("fp32", "bf16"):
        stored = _copy(ours)
        stored.model.recompute_pointwise = False
        ab("pointwise recompute (its cost)", dtype, ("recompute", _copy(ours), opts), ("stored", stored, opts))
        del stored
    if device.type == "cpu" and sys.platform == "linux":
        out += allocator_levers(shape, steps, linear_backend, optimizer)
    if compile:
        for dtype in ("fp32", "bf16"):
            ab("torch.compile", dtype, ("torch.compile", _copy(ours), TrainOptions(optimizer=optimizer, compile=True)),
               ("eager", _copy(ours), opts))  # fmt: skip
    return out


def allocator_levers(shape: Shape, steps: int, linear_backend: str, optimizer: str) -> list[LeverResult]:
    """glibc malloc keeping freed memory (`MALLOC_MMAP_MAX_=0`, high trim threshold): alternating processes."""
    out = []
    for dtype in ("fp32", "bf16"):
        kept, default = allocator_ab(shape.name, dtype, steps, 2, linear_backend, optimizer, QUIET.max_wait_s)
        setting = f"MALLOC_MMAP_MAX_=0: {kept['faults']:,.0f} vs {default['faults']:,.0f} page faults/step"
        tokens = shape.tokens_per_step
        value, baseline = tokens / kept["step_s"], tokens / default["step_s"]
        out.append(
            LeverResult("malloc keeps freed memory", shape.name, setting, f"train tok/s {dtype}", value, baseline)
        )
    return out


# ---------------------------------------------------------------- generation levers
def generation_levers(
    shape: Shape, device: torch.device, new_tokens: int, src_len: int, repeats: int, batches: list[int]
) -> list[LeverResult]:
    """GEMM backend, bf16 weights and the KV cache in greedy decoding."""
    ours = build_ours(shape, linear_backend="onednn")
    ours.model.to(device)
    mkl = _with_linear_backend(ours, "default")
    measured = _with_linear_backend(ours, "auto")
    runners = [
        Runner("fp32, MKL (default)", "fp32", generator_for(mkl, "fp32")),
        Runner("fp32, oneDNN", "fp32", generator_for(ours, "fp32")),
        Runner("fp32, auto", "fp32", generator_for(measured, "fp32")),
        Runner("bf16 weights, oneDNN", "bf16", generator_for(ours, "bf16")),
    ]
    if device.type == "cpu" and shape.name == "tiny":  # the whole prefix every step is quadratic: tiny only
        runners.append(Runner("fp32, no KV cache", "fp32", generator_for(ours, "fp32", use_cache=False)))
    out = []
    for batch in batches:
        results = measure_generation(shape.name, runners, batch, shape.vocab, src_len, new_tokens, repeats, device)
        v = {r.model: r.tokens_per_s for r in results}
        metric = f"generate tok/s B{batch}"

        def lever(name: str, setting: str, on: str, off: str, v=v, metric=metric) -> None:  # noqa: ANN001
            out.append(LeverResult(name, shape.name, setting, metric, v[on], v[off]))

        lever("fp32 GEMM backend (decoding)", "oneDNN, packed weights", "fp32, oneDNN", "fp32, MKL (default)")
        lever("fp32 GEMM backend (decoding)", "auto: measured per shape, rows", "fp32, auto", "fp32, MKL (default)")
        lever("bf16 weights (decoding)", "bf16 vs fp32 weights", "bf16 weights, oneDNN", "fp32, oneDNN")
        if "fp32, no KV cache" in v:
            lever("static KV cache (decoding)", "cache vs recompute", "fp32, oneDNN", "fp32, no KV cache")
    return out
