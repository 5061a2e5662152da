"""`python -m enhanced_tx.bench` (`make bench`): see `python -m enhanced_tx.bench --help`."""

from __future__ import annotations

import json
import sys
import warnings

import torch

from enhanced_tx.bench import report
from enhanced_tx.bench.cli import config_from_args, parser
from enhanced_tx.bench.runner import Results, run
from enhanced_tx.bench.timing import QUIET


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # HF's gradient_checkpointing_* renames
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    QUIET.max_wait_s = args.wait_quiet
    if args.from_json:
        with open(args.from_json) as f:
            results = Results.from_dict(json.load(f))
    else:
        results = run(config_from_args(args), log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(report.text(results))
    if args.json and not args.from_json:
        with open(args.json, "w") as f:
            json.dump(results.to_dict(), f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
