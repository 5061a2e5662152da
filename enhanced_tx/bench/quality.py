"""`python -m enhanced_tx.bench.quality` (`make bench-quality`): our defaults against a stock HF BART.

Both contenders train the same tiny shape on the same real task (English -> German software messages
from the machine's gettext catalogs, `enhanced_tx.data.catalog_pairs`), one after the other, each on
`--threads` threads; then greedy-translate the test pairs and are scored by sacrebleu. Two comparisons:

- equal steps: both train `--steps` optimizer steps (their schedules span them); validation loss every
  `eval_every` steps, test chrF / BLEU at the end;
- equal wall clock: both train for `--seconds` of training time (ours with `trainer.budget.minutes`, BART
  with a step schedule sized from its measured speed and stopped at the budget).

`--ablate "norm=layernorm" "..."` adds runs of ours with those overrides at equal steps (per-step
effects need no BART rerun). `--quick` is a two-minute smoke version with a short schedule.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from enhanced_tx.bench.quality_report import markdown, text
from enhanced_tx.bench.quality_result import Outcome, QualitySpec, outcome_from_dict
from enhanced_tx.data.catalog_pairs import build_catalog_pairs
from enhanced_tx.data.pairs_format import read_pairs

QUICK = {"steps": 40, "seconds": 10.0, "eval_every": 20, "test_pairs": 50}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m enhanced_tx.bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a two-minute smoke run (short schedule, 100 test pairs)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps of the equal-steps runs")
    p.add_argument("--seconds", type=float, default=300.0, help="training seconds of the equal-wall-clock runs")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--test-pairs", type=int, default=1000, help="test pairs translated and scored (of 1000)")
    p.add_argument("--precision", nargs="+", default=["bf16"], choices=["bf16", "fp32"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each contender (they run one at a time)")
    p.add_argument("--skip-seconds", action="store_true", help="only the equal-steps comparison")
    p.add_argument("--skip-bart", action="store_true", help="only our runs (for ablations)")
    p.add_argument("--skip-defaults", action="store_true", help="no run of our defaults (only --ablate runs)")
    p.add_argument(
        "--only",
        choices=["ours", "bart"],
        default=None,
        help="one contender (steps and seconds): run each in its own process at once, then --merge their --json files",
    )
    p.add_argument(
        "--seconds-only",
        action="store_true",
        help="only the equal-wall-clock runs (BART's schedule sized from"
        " --bart-timing-steps timed steps instead of its equal-steps run)",
    )
    p.add_argument("--bart-timing-steps", type=int, default=20, help="with --seconds-only: BART's timed steps")
    p.add_argument("--merge", nargs="+", default=None, help="print one report from these --json files; trains nothing")
    p.add_argument(
        "--ablate", nargs="*", default=[], help='override sets for extra runs of ours, e.g. "norm=layernorm"'
    )
    p.add_argument("--out", default="outputs/bench-quality", help="folder of our run folders and logs")
    p.add_argument("--cache-dir", default=None, help="where the catalog pairs are cached (default: the data cache)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--markdown", default=None, help="write the report as markdown here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.merge:
        return merge(args)
    from enhanced_tx.bench.quality_bart import train_bart, translate
    from enhanced_tx.bench.quality_ours import run_ours
    from enhanced_tx.data import BPETokenizer, PairsData
    from enhanced_tx.evaluation.metrics import corpus_scores

    torch.set_num_threads(args.threads)
    data = build_catalog_pairs(args.cache_dir)
    info = data.info()
    log(f"data: {info['task']}: {info['pairs']} pairs from {len(info['catalogs_read'])} catalogs ({data.train.parent})")
    spec = replace(QualitySpec(), eval_every=args.eval_every)
    pairs = PairsData(str(data.train), val_path=str(data.val))
    train, val = pairs.split()
    test = read_pairs(str(data.test), "test", "jsonl", "source", "target", False)[: args.test_pairs]
    # BART's tokenizer: the one run_train.py builds for ours (the same BPE on the same training text)
    tokenizer = None if args.skip_bart else BPETokenizer().build(pairs.tokenizer_corpus())
    out = Path(args.out).resolve() / time.strftime("%Y%m%d-%H%M%S")  # absolute: run_train.py runs from the repo root
    out.mkdir(parents=True, exist_ok=True)
    test_file = out / "test.jsonl"  # the pairs both contenders are scored on (the first --test-pairs)
    test_file.write_text("".join(json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n" for s, t in test))
    outcomes: list[Outcome] = []

    def bart(steps: int, seconds: float | None, precision: str, mode: str) -> Outcome:
        model, curve = train_bart(tokenizer, train, val, spec, steps, seconds, precision, log)
        scores = corpus_scores(translate(model, tokenizer, [s for s, _ in test], spec, precision), [t for _, t in test])
        return Outcome("bart", mode, precision, curve, scores.chrf, scores.bleu)

    def ours(steps: int, seconds: float | None, precision: str, mode: str, overrides: list[str]) -> Outcome:
        name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(["ours", mode, precision, *overrides]))  # Hydra-safe
        run_dir = out / name
        curve, scores = run_ours(data, run_dir, spec, steps, seconds, precision, overrides, args.threads, test_file)
        log(
            f"{curve.name} ({mode}, {precision}): {[(p.step, round(p.val_loss, 3)) for p in curve.points]}, "
            f"chrF {scores['chrf']:.1f}"
        )
        return Outcome(curve.name, mode, precision, curve, scores["chrf"], scores["bleu"])

    run_ours_too, run_bart = args.only != "bart", args.only != "ours" and not args.skip_bart
    for precision in args.precision:
        if run_ours_too and not args.skip_defaults and not args.seconds_only:
            outcomes.append(ours(args.steps, None, precision, "steps", []))
        for overrides in args.ablate if run_ours_too else []:
            outcomes.append(ours(args.steps, None, precision, "steps", overrides.split()))
        if run_bart:
            if args.seconds_only:  # a short timing run, as an HF user sizes a schedule for a budget
                timed = train_bart(tokenizer, train, val, spec, args.bart_timing_steps, None, precision, log)[1]
                per_step = timed.train_seconds / max(timed.steps, 1)
            else:
                bart_eq = bart(args.steps, None, precision, "steps")
                outcomes.append(bart_eq)
                per_step = bart_eq.curve.train_seconds / max(bart_eq.curve.steps, 1)
            if not args.skip_seconds:
                bart_steps = max(math.ceil(args.seconds / per_step), 1)  # the schedule an HF user sizes for the budget
                outcomes.append(bart(bart_steps, args.seconds, precision, "seconds"))
        if run_ours_too and not args.skip_bart and not args.skip_seconds:  # ablation runs (--skip-bart) skip it
            outcomes.append(ours(args.steps, args.seconds, precision, "seconds", []))
    print(text(outcomes, spec, info))
    if args.json:
        Path(args.json).write_text(json.dumps([o.as_dict() for o in outcomes], indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(outcomes, spec, info))
    return 0


def merge(args: argparse.Namespace) -> int:
    """One report from the --json files of separate runs (e.g. `--only ours` and `--only bart` at once)."""
    outcomes = [outcome_from_dict(r) for path in args.merge for r in json.loads(Path(path).read_text())]
    spec = replace(QualitySpec(), eval_every=args.eval_every)
    info = build_catalog_pairs(args.cache_dir).info()
    print(text(outcomes, spec, info))
    if args.markdown:
        Path(args.markdown).write_text(markdown(outcomes, spec, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
