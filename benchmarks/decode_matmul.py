"""Decoding's matmuls on this CPU: PyTorch's `F.linear` (MKL) against oneDNN with a packed weight, by rows.

The weight shapes of the bench's tiny and small models, in inference mode, x of shape [rows, 1, K] as a
decoding step has it, at 1, 5, 8 and 40 rows (greedy batch 1, beams at batch 1, batch 8, beams at batch 8).
Each figure is the best of 5 samples of 30 calls; "packing" is the one-off cost of packing the weight. This
is what `linear_backend=auto` measures per machine (docs/benchmarks.md, "Full run on an Intel Xeon"):

    PYTHONPATH=. python benchmarks/decode_matmul.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# (in_features K, out_features N, what it is)
SHAPES = [
    (768, 3072, "small FFN up"),
    (3072, 768, "small FFN down"),
    (768, 2304, "small QKV"),
    (768, 768, "small out proj."),
    (768, 32000, "small head"),
    (256, 8192, "tiny head"),
    (256, 1024, "tiny FFN up"),
]
ROWS = (1, 5, 8, 40)


def best_us(call: Callable[[], object], calls: int = 30, samples: int = 5) -> float:
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all CPUs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    onednn = torch.ops.mkldnn._linear_pointwise
    print(f"{torch.get_num_threads()} threads; us per call, F.linear / packed oneDNN (speed-up of packed)")
    print("| weight K x N | " + " | ".join(f"{r} rows" for r in ROWS) + " | packing once |")
    print("|---" * (len(ROWS) + 2) + "|")
    with torch.inference_mode():
        for k, n, what in SHAPES:
            weight = torch.randn(n, k)
            start = time.perf_counter()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight)
            pack_ms = (time.perf_counter() - start) * 1e3
            cells = []
            for rows in ROWS:
                x = torch.randn(rows, 1, k)
                mkl = best_us(lambda x=x, w=weight: F.linear(x, w))
                pk = best_us(lambda x=x, p=packed: onednn(x, p, None, "none", [], ""))
                cells.append(f"{mkl:,.0f} / {pk:,.0f} ({mkl / pk:.2f}x)")
            print(f"| {k} x {n} ({what}) | " + " | ".join(cells) + f" | {pack_ms:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
