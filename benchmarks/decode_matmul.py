"""Decoding's matmuls on this CPU: PyTorch's `F.linear` (MKL) against oneDNN with a packed weight, by rows.

The weight shapes of the bench's tiny and small models at 1, 5, 8 and 40 rows (greedy batch 1, beams at
batch 1, batch 8, beams at batch 8), timed by exactly what `linear_backend=auto` runs on a new machine
(`linear_choice.measure_inference` over `linear.INFERENCE_CANDIDATES`: forward only, inference mode, best of 3
samples of at least 1 ms each); "packing once" is the one-off cost of packing the weight
(docs/benchmarks.md, "Full run on an Intel Xeon"):

    PYTHONPATH=. python benchmarks/decode_matmul.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from enhanced_tx.model.linear import INFERENCE_CANDIDATES
from enhanced_tx.model.linear_choice import measure_inference

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all CPUs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads; us per call, F.linear / packed oneDNN (speed-up of packed)")
    print("| weight K x N | " + " | ".join(f"{r} rows" for r in ROWS) + " | packing once |")
    print("|---" * (len(ROWS) + 2) + "|")
    with torch.inference_mode():
        for k, n, what in SHAPES:
            weight = torch.randn(n, k)
            start = time.perf_counter()
            torch.ops.mkldnn._reorder_linear_weight(weight)
            pack_ms = (time.perf_counter() - start) * 1e3
            cells = []
            for rows in ROWS:
                seconds = measure_inference(k, n, torch.float32, rows, INFERENCE_CANDIDATES)
                mkl, packed = 1e6 * seconds["default"], 1e6 * seconds["onednn_packed"]
                cells.append(f"{mkl:,.0f} / {packed:,.0f} ({mkl / packed:.2f}x)")
            print(f"| {k} x {n} ({what}) | " + " | ".join(cells) + f" | {pack_ms:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
