"""Beam search with the compiled decode step (`generate(compile=True)`) against eager and HF BART, one process.

The measurement behind "Compiled decode step" in docs/benchmarks.md. The bench's beam setting (5 beams,
length_penalty=1.0, early_stopping=True, source 32, exactly `--new-tokens` steps, fp32, one thread unless
told): our `generate()` as shipped (eager), the same call with `compile=True`, and HF BART's `generate`. The
compiled beams must equal the eager ones (checked, else the script exits 1). Reports the first compiled call
(the compilation), the graphs dynamo built, and the best of `--repeats` interleaved calls:

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from enhanced_tx.bench.beam import BEAM_SETTINGS, beam_runners  # noqa: E402
from enhanced_tx.bench.generation import NEVER  # noqa: E402
from enhanced_tx.bench.peers import BART, OURS, build_bart, build_ours  # noqa: E402
from enhanced_tx.bench.shapes import SHAPES  # noqa: E402
from enhanced_tx.bench.timing import Samples, time_once  # noqa: E402
from enhanced_tx.generation import BeamSearch, generate  # noqa: E402
from enhanced_tx.model import EncoderDecoder  # noqa: E402

COMPILED = "ours (compiled step)"


def compiled_runner(model: EncoderDecoder) -> Callable[[Tensor, int], Tensor]:
    """Our `generate()` with the bench's beam search and `compile=True`."""
    search = BeamSearch(**BEAM_SETTINGS)

    def run(src: Tensor, new_tokens: int) -> Tensor:
        return generate(model, src, max_new_tokens=new_tokens, sampler=search, bos_id=1, eos_id=NEVER, compile=True)

    return run


def graphs_built() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def measure(size: str, batches: list[int], new_tokens: int, repeats: int) -> list[str]:
    shape = SHAPES[size]
    ours, bart = build_ours(shape), build_bart(shape)
    runners = beam_runners([ours, bart])
    runners = {
        OURS: runners[OURS],
        COMPILED: compiled_runner(copy.deepcopy(ours.model).float().eval()),
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per step (best of {args.repeats}); vs BART")
    print("size  batch   eager  compiled    BART  eager/BART comp./BART  compile s graphs")
    for size in args.sizes.split(","):
        measure(size, [int(b) for b in args.batches.split(",")], args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
