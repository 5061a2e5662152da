"""An opt-in compiled decode step: `generate(..., compile=True)`, `compile=true` in conf/generate.yaml.

One step (decoder, head and the padded-vocabulary mask) is one `torch.compile`d graph. The first step runs
eagerly (it has another batch size in beam search and offset 0). The first batch size compiles two graphs:
one at the first compiled offset, then one with the offset symbolic. The row count stays static in the graph
(the matmul backend is chosen per row count; `linear._compiled_linear`), so every new batch size compiles one
more, and beam search one more of its per-step update (`beam_search._advance_compiled`); tests/test_compiled_step.py
counts them. A process compiles up to `GRAPH_LIMIT` graphs of each (models x batch sizes; past it dynamo runs
eagerly, so a storm of new shapes cannot compile forever). Under a `TorchDispatchMode` (such as
`FlopCounterMode`) both run eagerly: dynamo cannot trace one, and a step it had tried to trace under one ran
eagerly ever after, at every batch size. Worth it for many calls of one shape, where inductor's fused
elementwise work and the absence of Python between ops pay (tiny beam search at batch 1: ~1.4x the eager step),
not for one call (8-30 s to compile).
docs/benchmarks.md, "Compiled decode step, opt-in", has the measurements.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from enhanced_tx.generation.logits import mask_padded_vocab
from enhanced_tx.generation.steppers import CachedStepper
from enhanced_tx.model import EncoderDecoder
from enhanced_tx.model.cache import DecoderCache
from enhanced_tx.model.linear import pack_in_compiled_graphs

_compiled = None  # the compiled step, made on first use (a guard on the model recompiles it per model)
# Graphs of the step a process may compile, instead of dynamo's global 8: every model and batch size needs its own.
GRAPH_LIMIT = 64


def _step(model: EncoderDecoder, tokens: Tensor, cache: DecoderCache) -> tuple[Tensor, DecoderCache]:
    logits, cache = model.decode_step(tokens, cache)  # (B, 1, V_padded)
    return mask_padded_vocab(logits[:, -1].float(), model.vocab_size), cache


def _mark_rows_static(tokens: Tensor, cache: DecoderCache) -> None:
    """Keep the row count a constant in the graph, so each matmul's backend is chosen for its rows; and the
    source count, without which a second batch size of beam search compiled three graphs instead of one."""
    for tensor in (tokens, *cache.self_k, *cache.self_v):
        torch._dynamo.mark_static(tensor, 0)
    for tensor in (cache.cross_k, cache.cross_v):  # (L, N, H, S, hd)
        torch._dynamo.mark_static(tensor, 1)
    if cache.cross_mask is not None:
        torch._dynamo.mark_static(cache.cross_mask, 0)
    if cache.lineage is not None:
        torch._dynamo.mark_static(cache.lineage, 0)


class CompiledStepper(CachedStepper):
    """`CachedStepper` whose steps after the first run one compiled graph; the same scores to fp32 rounding.

    The self-attention cache is one buffer per layer (`DecoderCache.per_layer`): written in place in the graph.
    Beam search reorders a lineage table instead of the cache (`DecoderCache.tracking_lineage`).
    """

    compiled = True  # searches may compile their own per-step work too (`beam_search._advance_compiled`)

    def __init__(self, model: EncoderDecoder, src: Tensor, src_mask: Tensor | None, max_len: int) -> None:
        super().__init__(model, src, src_mask, max_len)
        self.cache = self.cache.per_layer()

    def __call__(self, tokens: Tensor) -> Tensor:
        global _compiled
        if self.cache.offset == 0 or is_in_torch_dispatch_mode():
            return super().__call__(tokens)
        if _compiled is None:
            pack_in_compiled_graphs()
            _compiled = torch.compile(_step, dynamic=None, recompile_limit=GRAPH_LIMIT)
        _mark_rows_static(tokens, self.cache)
        scores, self.cache = _compiled(self.model, tokens, self.cache)
        return scores

    def reorder(self, index: Tensor) -> None:
        if self.cache.lineage is None and index.shape[0] == self.batch_size and self.device.type == "cpu":
            # beam search past its first step: from now on a reorder moves a table of rows, not the cache, and the
            # graph reads keys and values through it (`model/lineage.py`); greedy decoding never reorders. CPUs
            # only, where it was measured: a GPU copies its cache at HBM speed, and its SDPA is a flash kernel.
            self.cache = self.cache.tracking_lineage()
        super().reorder(index)
