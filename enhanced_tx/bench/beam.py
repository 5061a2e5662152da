"""Beam search throughput: ours (`BeamSearch` through the KV cache) against HF BART's `generate(num_beams=...)`.

Both sides search with the same settings (5 beams, length_penalty=1.0, early_stopping=True) and run exactly
`new_tokens` steps: ours with `eos_id=-1` (no token ends a beam, so every hypothesis finishes at the last
step), BART with `min_new_tokens == max_new_tokens` (EOS suppressed, the same rule) and no forced EOS.
Tokens/s counts the returned tokens (batch x new tokens) over the whole call, encoder included.

Ours is measured three ways: `generate()` as called once (it packs the weights `linear_backend=auto` chose
to pack into oneDNN's layout inside the call: up to ~1 s for the small model on one thread); inside one outer
`packed_weights()` block, as a process that generates many batches with the same weights keeps them packed;
and with `generate(compile=True)` (the compiled decode step, compiled in an untimed warm-up call of full
length: 8-30 s per batch size).

After the timed calls, one more call of each contender runs under `MatmulTimer`: the seconds its matmuls
take (`matmul_s`). BART's best call over our matmul seconds is the ceiling of the beam goals: the ratio we
would reach if nothing but our matmuls took any time.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from enhanced_tx.bench.generation import OURS_COMPILED, hf_generator, ours_generator, warm_up_tokens
from enhanced_tx.bench.matmul_time import matmul_seconds
from enhanced_tx.bench.peers import BART, OURS, Contender
from enhanced_tx.bench.timing import Samples, time_once
from enhanced_tx.generation import BeamSearch
from enhanced_tx.model.linear import packed_weights

BEAM_SETTINGS = dict(num_beams=5, length_penalty=1.0, early_stopping=True)
OURS_PACKED_ONCE = "ours (packed once)"


@dataclass
class BeamResult:
    size: str
    batch: int
    model: str
    tokens_per_s: float
    call_s: float
    ms_per_step: float
    matmul_s: float | None = None  # seconds the call spends in matmul ops (one untimed call, instrumented)


def beam_runners(contenders: list[Contender], compiled: bool = True) -> dict[str, Callable[[Tensor, int], Tensor]]:
    """name -> (src [B, S], new_tokens) -> [B, new_tokens], each over an fp32 eval-mode copy of the weights;
    `compiled`: with the compiled-step row."""
    runners = {}
    for contender in contenders:
        model = copy.deepcopy(contender.model).float().eval()
        if contender.name == OURS:
            runners[OURS] = runners[OURS_PACKED_ONCE] = ours_generator(model, BeamSearch(**BEAM_SETTINGS))
            if compiled:
                runners[OURS_COMPILED] = ours_generator(model, BeamSearch(**BEAM_SETTINGS), compile=True)
        elif contender.name == BART:
            runners[BART] = hf_generator(model, **BEAM_SETTINGS)
    return runners


@contextlib.contextmanager
def _measured_as(name: str, run: Callable[[Tensor, int], Tensor], src: Tensor) -> Iterator[None]:
    """Within: the state `name` is measured in. For "packed once", an outer packed_weights() block whose
    weights a 2-token call has packed (auto packs a weight at its second use), untimed."""
    if name != OURS_PACKED_ONCE:
        yield
        return
    with packed_weights():
        run(src, 2)
        yield


def measure_beam(
    size: str,
    runners: dict[str, Callable[[Tensor, int], Tensor]],
    batch: int,
    vocab: int,
    src_len: int,
    new_tokens: int,
    repeats: int,
    device: torch.device,
) -> list[BeamResult]:
    """Interleave `repeats` timed calls of every runner on the same random source; the best call counts."""
    src = torch.randint(4, vocab, (batch, src_len), generator=torch.Generator().manual_seed(2)).to(device)
    for name, run in runners.items():
        warm = warm_up_tokens(name, new_tokens, 4)
        out = run(src, warm)  # warm-up, and a check that EOS really is ignored
        if tuple(out.shape) != (batch, warm):
            raise RuntimeError(f"{name} returned {tuple(out.shape)} tokens, expected {(batch, warm)}")
    samples = {name: Samples() for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            with _measured_as(name, run, src):
                samples[name].add(time_once(lambda run=run: run(src, new_tokens), device))
    matmul_s = {}
    if device.type == "cpu":  # elsewhere ops run asynchronously: wall time around an op is not its time
        for name, run in runners.items():
            if name == OURS_COMPILED:  # under the timer's dispatch mode the step runs eagerly
                continue
            with _measured_as(name, run, src):
                matmul_s[name] = matmul_seconds(lambda run=run: run(src, new_tokens))
    return [
        BeamResult(
            size, batch, name, batch * new_tokens / s.best, s.best, 1e3 * s.best / new_tokens, matmul_s.get(name)
        )
        for name, s in samples.items()
    ]
