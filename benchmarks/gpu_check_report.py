"""The GPU check's printed table (benchmarks/gpu_check.py): training rows with MFU, memory, finite steps,
recompiles, greedy decoding against BART, errors and skipped parts."""

from __future__ import annotations

from enhanced_tx.bench.machine import one_line
from enhanced_tx.bench.peers import BART, OURS
from enhanced_tx.bench.table import Table, fmt

COMPILED = "train ours bf16 compiled"
COMPILED_BLOCKS = "train ours bf16 compiled per block"
MFU_GOAL = 0.45


def table(out: dict) -> str:
    shape = out["shape"]
    t = Table(
        f"Training, bf16 autocast, batch x (source + target) = {shape['batch']} x ({shape['src_len']} + "
        f"{shape['tgt_len']})",
        ["run", "sdpa", "tok/s", "step ms", "TFLOP/s", "MFU", "loss", "vs BART eager"],
    )
    bart = out.get("train bart bf16 eager", {}).get("tokens_per_s")
    for key, r in out.items():
        if key.startswith("train ") and isinstance(r, dict):
            mfu = "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
            vs = f"{r['tokens_per_s'] / bart:.2f}x" if bart else "-"
            t.add(
                key[6:], r["sdpa"][:24], r["tokens_per_s"], fmt(r["step_ms"], 1), fmt(r["tflops"], 1), mfu,
                fmt(r["loss"], 3), vs,
            )  # fmt: skip
    peaks = out.get("peaks", {})
    t.notes.append("matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in peaks.items()))
    best = max((out.get(k, {}).get("mfu") or 0 for k in (COMPILED, COMPILED_BLOCKS)), default=0)
    if best:
        verdict = "met" if best >= MFU_GOAL else "NOT met"
        t.notes.append(f"MFU goal >= {100 * MFU_GOAL:.0f}% (ours, compiled, flash): {verdict} ({100 * best:.1f}%)")
    m = Table(
        "Memory, bf16, with and without gradient checkpointing (MB)",
        ["model", "after fwd", "after fwd ckpt", "ratio", "peak", "peak ckpt"],
    )
    for name in ("memory ours", "memory bart"):
        r = out.get(name)
        if r:
            m.add(
                r["model"], r["after_forward_mb"], r["after_forward_ckpt_mb"], f"{r['ratio_after_forward']:.2f}x",
                fmt(r["peak_mb"]), fmt(r["peak_ckpt_mb"]),
            )  # fmt: skip
    f = Table("Finite training steps (5 eager steps, lr 1e-3)", ["dtype", "finite", "losses", "grad scale"])
    for dtype in ("bf16", "fp16"):
        r = out.get(f"finite {dtype}")
        if r:
            f.add(dtype, str(r["finite"]), " ".join(f"{x:.3f}" for x in r["losses"]), fmt(r["grad_scale"]))
    parts = [f"{one_line(out['machine'])}  ({out.get('date')}{', DRY RUN on a CPU' if out.get('dry_run') else ''})"]
    parts += [t.text(), m.text(), f.text()]
    r = out.get("recompiles")
    if r:
        parts.append(
            f"per-block compile over target lengths {r['lengths']} (each twice): {r['unique_graphs']} graphs, "
            f"recompiles {r['recompiles']}, slowest second-pass step {r['second_pass_max_s']:.2f}s"
        )
    d = out.get("decode")
    if d:
        ms = d["ms_per_step"]
        verdict = "met" if d["ratio"] <= d["goal"] else "NOT met"
        parts.append(
            f"greedy decode, batch 1, bf16, {d['new_tokens']} tokens: ours {ms[OURS]:.2f} ms/step, "
            f"BART {ms[BART]:.2f}: "
            f"{d['ratio']:.2f}x (goal <= {d['goal']}x: {verdict})"
        )
    if "flash" in out:
        parts.append(
            f"flash SDPA for every attention call (fwd + bwd): {out['flash']['flash_attention_forward_backward']}"
        )
    if out["errors"]:
        parts.append("ERRORS:\n" + "\n".join(f"  {k}: {v}" for k, v in out["errors"].items()))
    if out["skipped"]:
        parts.append("skipped (time budget): " + ", ".join(out["skipped"]))
    return "\n\n".join(parts)
