"""Beam search with a compiled decode step: eager against `torch.compile` of one step, and HF BART, one process.

The experiment behind "Compiled decode step: tried, not kept" in docs/benchmarks.md. The bench's beam setting
(5 beams, length_penalty=1.0, early_stopping=True, source 32, exactly `--new-tokens` steps, fp32, one thread
unless told): our `generate()` as shipped (eager), the same `BeamSearch` fed by a stepper whose decode step
(decoder + head + padded-vocabulary mask) is `torch.compile(dynamic=None)`d once per model, and HF BART's
`generate`. The compiled beams must equal the eager ones (checked, else the script exits 1). Reports the
first compiled call (the compilation), the graphs dynamo built, and the best of `--repeats` interleaved calls:

    PYTHONPATH=. python benchmarks/compiled_decode.py --sizes tiny,small --batches 1,8
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.attention import sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from enhanced_tx.bench.beam import BEAM_SETTINGS, beam_runners  # noqa: E402
from enhanced_tx.bench.generation import NEVER  # noqa: E402
from enhanced_tx.bench.peers import BART, OURS, build_bart, build_ours  # noqa: E402
from enhanced_tx.bench.shapes import SHAPES  # noqa: E402
from enhanced_tx.bench.timing import Samples, time_once  # noqa: E402
from enhanced_tx.generation import BeamSearch  # noqa: E402
from enhanced_tx.generation.decode import DECODE_ATTENTION_BACKENDS  # noqa: E402
from enhanced_tx.generation.logits import mask_padded_vocab  # noqa: E402
from enhanced_tx.generation.steppers import CachedStepper  # noqa: E402
from enhanced_tx.model import EncoderDecoder  # noqa: E402
from enhanced_tx.model.cache import DecoderCache  # noqa: E402
from enhanced_tx.model.linear import packed_weights  # noqa: E402

COMPILED = "ours (compiled step)"
Step = Callable[[Tensor, DecoderCache], tuple[Tensor, DecoderCache]]


def compiled_step(model: EncoderDecoder, backend: str = "inductor") -> Step:
    """(tokens [B, 1], cache) -> (next-token scores [B, V_padded], cache), one compiled region."""

    def step(tokens: Tensor, cache: DecoderCache) -> tuple[Tensor, DecoderCache]:
        logits, cache = model.decode_step(tokens, cache)
        return mask_padded_vocab(logits[:, -1].float(), model.vocab_size), cache

    return torch.compile(step, dynamic=None, backend=backend)


class CompiledStepper(CachedStepper):
    def __init__(self, model: EncoderDecoder, src: Tensor, max_len: int, step: Step) -> None:
        super().__init__(model, src, None, max_len)
        self.step = step

    def __call__(self, tokens: Tensor) -> Tensor:
        scores, self.cache = self.step(tokens, self.cache)
        return scores


def compiled_runner(model: EncoderDecoder, backend: str = "inductor") -> Callable[[Tensor, int], Tensor]:
    """What `generate()` does for a beam search, with the compiled step in place of the eager one."""
    search, step = BeamSearch(**BEAM_SETTINGS), compiled_step(model, backend)

    def run(src: Tensor, new_tokens: int) -> Tensor:
        with torch.inference_mode(), sdpa_kernel(DECODE_ATTENTION_BACKENDS), packed_weights():
            stepper = CompiledStepper(model, src, new_tokens, step)
            return search.search(stepper, max_new_tokens=new_tokens, bos_id=1, eos_id=NEVER)

    return run


def graphs_built() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def measure(size: str, batches: list[int], new_tokens: int, repeats: int, backend: str = "inductor") -> list[str]:
    shape = SHAPES[size]
    ours, bart = build_ours(shape), build_bart(shape)
    runners = beam_runners([ours, bart])
    runners = {
        OURS: runners[OURS],
        COMPILED: compiled_runner(copy.deepcopy(ours.model).float().eval(), backend),
        BART: runners[BART],
    }
    lines = []
    for batch in batches:
        src = torch.randint(4, shape.vocab, (batch, 32), generator=torch.Generator().manual_seed(2))
        eager = runners[OURS](src, new_tokens)
        graphs, start = graphs_built(), time.perf_counter()
        compiled = runners[COMPILED](src, new_tokens)
        compile_s, graphs = time.perf_counter() - start, graphs_built() - graphs
        if not torch.equal(compiled, eager):
            raise SystemExit(f"{size} B{batch}: the compiled step's beams differ from the eager ones")
        runners[BART](src, new_tokens)  # warm-up
        samples = {name: Samples() for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():
                samples[name].add(time_once(lambda run=run, src=src: run(src, new_tokens), src.device))
        ms = {name: 1e3 * s.best / new_tokens for name, s in samples.items()}
        lines.append(
            f"{size:<5} B{batch:<3} {ms[OURS]:>8.2f} {ms[COMPILED]:>9.2f} {ms[BART]:>7.2f}"
            f" {ms[BART] / ms[OURS]:>9.2f}x {ms[BART] / ms[COMPILED]:>9.2f}x {compile_s:>9.1f} {graphs:>6}"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated bench shapes")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (sources)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed calls of each; the best counts")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument(
        "--backend", default="inductor", help="torch.compile backend (aot_eager: no C++ build, a check)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per step (best of {args.repeats}); vs BART")
    print("size  batch   eager  compiled    BART  eager/BART comp./BART  compile s graphs")
    for size in args.sizes.split(","):
        measure(size, [int(b) for b in args.batches.split(",")], args.new_tokens, args.repeats, args.backend)


if __name__ == "__main__":
    main()
