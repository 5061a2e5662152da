"""One prepared GPU check (H100/H200, one GPU, no network, under 8 minutes): `bash benchmarks/gpu_check.sh`.

The DESIGN's GPU figures: the small model (d768, 12 heads, 6+6 layers, vocab 32000) at batch 32 with 512
source and 512 target tokens, bf16 autocast, flash SDPA, torch.compile, MFU against a bf16 matmul peak
measured here (goal >= 45%). Also: fp16 (GradScaler) and bf16 training steps stay finite, memory after the
forward pass and peak memory with and without gradient checkpointing, HF BART side by side at the same
shapes; per-block compilation (each Transformer block compiled once, torchtitan's choice) with the number of
graphs dynamo built, also over batches of several lengths (no recompile storm: at most a handful); greedy
decoding of the small model at batch 1, ms per step against BART's (goal <= 0.5x). Writes a JSON file
(after every part), a copy named by date and device under `benchmarks/results/`, and prints a table.

Every part (`benchmarks/gpu_check_parts.py`) runs in its own child process (`--part NAME`): a crash (a
segfault in a compiler, say), a hang or an exception is recorded in `errors` and the other parts still run.
When compiling the whole forward + loss fails, per-block compilation is tried instead. Parts that would
overrun `--budget-s` are skipped and listed.
`--dry-run` runs the same code on a CPU at a tiny shape to check the script itself, in under a minute: every
part in one child process (one import of torch), compiling with aot_eager (no C++ build), 2 timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.gpu_check_parts import DRY_SHAPE, GPU_SHAPE, Parts  # noqa: E402
from benchmarks.gpu_check_report import COMPILED, COMPILED_BLOCKS, table  # noqa: E402
from enhanced_tx.bench.machine import describe  # noqa: E402


# ---------------------------------------------------------------------- the driver (parent process)
class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        device = torch.device("cpu" if args.dry_run else "cuda")
        shape = DRY_SHAPE if args.dry_run else GPU_SHAPE
        self.out: dict = {"machine": describe(device), "shape": vars(shape), "errors": {}, "skipped": []}
        self.out["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.out["dry_run"] = bool(args.dry_run)
        name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu-dry-run"
        device_name = "".join(c if c.isalnum() else "-" for c in name)
        stem = f"gpu_check_{time.strftime('%Y%m%d-%H%M', time.gmtime())}_{device_name}"
        results = Path(args.results_dir) if args.results_dir else Path(args.out).parent
        self.dated = results / f"{stem}.json"
        self.report = results / f"{time.strftime('%Y-%m-%d', time.gmtime())}-{device_name}.md"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.out["total_s"] = self.elapsed()
        text = json.dumps(self.out, indent=2, default=str)
        for path in (Path(self.args.out), self.dated):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def part(self, name: str, cost_s: float) -> bool:
        """Run one part in a child process unless the budget would be exceeded; True when it succeeded."""
        left = self.args.budget_s - self.elapsed()
        if cost_s > left:
            self.out["skipped"].append(name)
            print(f"[{self.elapsed():5.0f}s] skip {name} (budget)", flush=True)
            return False
        print(f"[{self.elapsed():5.0f}s] {name} ...", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "part.json"
            command = [sys.executable, __file__, "--part", name, "--part-out", str(result_path), "--one"]
            command += ["--steps", str(self.args.steps)] + (["--dry-run"] if self.args.dry_run else [])
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=left)
            except subprocess.TimeoutExpired:
                self.out["errors"][name] = f"timed out after {left:.0f}s"
                proc = None
            if proc is not None:
                if proc.returncode == 0 and result_path.exists():
                    self.out[name] = json.loads(result_path.read_text())
                else:
                    self.out["errors"][name] = _failure(proc)
                    print(proc.stdout[-2000:] + proc.stderr[-4000:], flush=True)
        self.save()  # after every part: a run stopped by an outer timeout still leaves its figures
        print(f"[{self.elapsed():5.0f}s] {name} done in {time.perf_counter() - start:.0f}s", flush=True)
        return name in self.out

    def plan(self) -> list[tuple[str, float]]:
        """(part, the seconds it may take on the GPU), in the order they run."""
        compiled = not self.args.no_compile
        plan = [("peaks", 30), ("flash", 20)]
        # repeated blocks compile once (CompiledBlocks, what trainer.compile=true installs)
        plan += [(COMPILED_BLOCKS, 100), ("recompiles", 90)] if compiled else []
        plan += [("train bart bf16 eager", 30), ("train ours bf16 eager", 30), ("finite bf16", 20)]
        plan += [("finite fp16", 20), ("memory ours", 25), ("memory bart", 25), ("decode", 40)]
        plan += [(COMPILED, 120), ("train bart bf16 compiled", 120)] if compiled else []  # whole forward + loss
        return plan

    def together(self, names: list[str]) -> None:
        """The dry run: every part in one child process (one import), each part's exception recorded."""
        print(f"[{self.elapsed():5.0f}s] {len(names)} parts in one process ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "parts.json"
            command = [sys.executable, __file__, "--part-out", str(result_path), "--steps", str(self.args.steps)]
            command += [arg for name in names for arg in ("--part", name)] + ["--dry-run"]
            proc = subprocess.run(command, capture_output=True, text=True)
            results = json.loads(result_path.read_text()) if result_path.exists() else {}
        for name in names:
            if name in results and "error" not in results[name]:
                self.out[name] = results[name]["result"]
            else:
                self.out["errors"][name] = results.get(name, {}).get("error") or _failure(proc)
        if proc.returncode != 0:
            print(proc.stdout[-2000:] + proc.stderr[-4000:], flush=True)
        print(f"[{self.elapsed():5.0f}s] parts done", flush=True)

    def run(self) -> dict:
        if self.args.dry_run:
            self.together([name for name, _ in self.plan()])
        else:
            for name, cost in self.plan():
                self.part(name, cost)
        self._mfu()
        self.save()
        return self.out

    def _mfu(self) -> None:
        peak = self.out.get("peaks", {}).get("bf16 torch.matmul")
        for key, value in self.out.items():
            if key.startswith("train ") and isinstance(value, dict) and peak and value.get("tflops"):
                value["mfu"] = value["tflops"] * 1e12 / peak


def _failure(proc: subprocess.CompletedProcess) -> str:
    code = proc.returncode
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} (a crash in native code)"
        except ValueError:
            return f"killed by signal {-code}"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1][:300] if lines else 'no output'}"


def run_parts(args: argparse.Namespace) -> int:
    """The child: one part (its exception is the process's failure), or several (each one's exception kept)."""
    parts = Parts(args)
    if args.one:
        Path(args.part_out).write_text(json.dumps(parts.run(args.part[0]), default=str))
        return 0
    results = {}
    for name in args.part:
        started = time.perf_counter()
        try:
            results[name] = {"result": parts.run(name)}
        except Exception as error:  # noqa: BLE001 - the dry run reports every broken part, not the first
            first = (str(error).splitlines() or [""])[0][:300]
            results[name] = {"error": f"{type(error).__name__}: {first}"}
        print(f"  {name}: {time.perf_counter() - started:.1f}s", flush=True)
        Path(args.part_out).write_text(json.dumps(results, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shape: check the script, not the GPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per training run (10; a dry run 2)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip parts that would end after this")
    p.add_argument(
        "--results-dir",
        default=None,
        help="also write a copy named by date and device here (gpu_check.sh: benchmarks/results; default: --out's)",
    )
    p.add_argument("--out", default="/tmp/gpu_check.json")
    p.add_argument("--part", action="append", help=argparse.SUPPRESS)  # internal: run parts in this process
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one part, errors raise
    p.add_argument("--part-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 10)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device visible; use --dry-run on a CPU", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    if args.part:
        return run_parts(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check = Check(args)
    out = check.run()
    text = table(out)
    print(text)
    check.report.write_text(f"# GPU check {out['date']}\n\n```\n{text}\n```\n")
    print(f"wrote {check.report}")
    print(f"\nwrote {args.out}")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
