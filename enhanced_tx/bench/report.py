"""Turns `Results` into tables: absolute figures, ratio columns against each peer, goals."""

from __future__ import annotations

from enhanced_tx.bench.attention_variants import attention_table
from enhanced_tx.bench.compiled import compiled_table
from enhanced_tx.bench.goals import evaluate
from enhanced_tx.bench.loss_memory import loss_memory_table
from enhanced_tx.bench.machine import one_line
from enhanced_tx.bench.peers import BART, PEERS
from enhanced_tx.bench.realdata import BART_REAL, OURS_NOPAD, OURS_RANDOM, OURS_RANDOM_PADDED
from enhanced_tx.bench.runner import Results
from enhanced_tx.bench.table import Table, fmt, ratio
from enhanced_tx.bench.tokenizing import tokenize_table


def peak_table(results: Results) -> Table:
    table = Table("Matmul peak (measured in this run)", ["dtype", "backend", "size", "GFLOP/s"])
    for p in results.peaks:
        table.add(p.dtype, p.backend, f"{p.size}^3", p.flops / 1e9)
    return table


def train_table(results: Results) -> Table:
    peers = [p for p in PEERS if any(r.model == p for r in results.train)]
    columns = ["size", "dtype", "model", "tok/s", "step ms", "GFLOP/s", "MFU", "loss"]
    table = Table("Training: forward + backward + AdamW", columns + [f"vs {p}" for p in peers])
    by_key = {(r.size, r.dtype, r.model): r for r in results.train}
    for r in results.train:
        refs = [by_key.get((r.size, r.dtype, p)) for p in peers]
        table.add(
            r.size,
            r.dtype,
            r.model,
            r.tokens_per_s,
            fmt(1e3 * r.step_s),
            fmt(r.gflops),
            "-" if r.mfu is None else f"{100 * r.mfu:.0f}%",
            fmt(r.loss, 2),
            *[ratio(r.tokens_per_s, ref.tokens_per_s if ref else None) for ref in refs],
        )
    table.notes.append(
        "tok/s = (source + target tokens) / best step; GFLOP/s and MFU use our model's FLOPs per token for every "
        "contender (same shapes) and the best matmul peak of the dtype."
    )
    return table


def generate_table(results: Results) -> Table:
    columns = ["size", "batch", "weights", "model", "tok/s", "ms/token", "vs BART same dtype", "vs BART fp32"]
    table = Table("Greedy generation with KV cache (EOS ignored, fixed new tokens)", columns)
    by_key = {(r.size, r.batch, r.dtype, r.model): r for r in results.generate}
    for r in results.generate:
        same = by_key.get((r.size, r.batch, r.dtype, BART))
        fp32 = by_key.get((r.size, r.batch, "fp32", BART))
        table.add(
            r.size,
            r.batch,
            r.dtype,
            r.model,
            r.tokens_per_s,
            fmt(r.ms_per_step, 1),
            ratio(r.tokens_per_s, same.tokens_per_s if same else None),
            ratio(r.tokens_per_s, fp32.tokens_per_s if fp32 else None),
        )
    config = results.config
    table.notes.append(
        f"{config['new_tokens']} new tokens from a {config['gen_src_len']}-token source; tok/s = batch x new tokens "
        "/ best whole call (encoder included); ms/token = call / new tokens. ours (compiled step): "
        "generate(compile=True), fp32, compiled in an untimed warm-up call of full length."
    )
    return table


def realdata_table(results: Results) -> Table:
    columns = ["dtype", "model", "steps", "seconds", "real tok/s", "padding", "loss", "vs bart", "vs no padding",
               "vs padding computed"]  # fmt: skip
    table = Table("Training on real-shaped pairs (tiny, one thread each, equal seconds)", columns)
    by_key = {(r.dtype, r.model): r for r in results.realdata}
    for r in results.realdata:
        bart, nopad = by_key.get((r.dtype, BART_REAL)), by_key.get((r.dtype, OURS_NOPAD))
        padded = by_key.get((r.dtype, OURS_RANDOM_PADDED)) if r.model == OURS_RANDOM else None
        table.add(
            r.dtype,
            r.model,
            r.steps,
            fmt(r.seconds, 1),
            r.tokens_per_s,
            f"{100 * r.padding:.0f}%",
            fmt(r.loss, 3),
            ratio(r.tokens_per_s, bart and bart.tokens_per_s),
            ratio(r.tokens_per_s, nopad and nopad.tokens_per_s),
            ratio(r.tokens_per_s, padded and padded.tokens_per_s),
        )
    table.notes.append(
        "generated pairs, log-normal lengths 3..120 tokens (median 14; enhanced_tx/bench/realdata_pairs.py); ours: "
        "data=pairs with max_tokens_per_batch (bucketed); bart: shuffled batches padded to the longest by "
        "DataCollatorForSeq2Seq; ours, random batches: BART's kind of batches, padding-free steps "
        "(trainer.pack_tokens=auto) vs the padding computed (false). real tok/s: non-padding source + target "
        "tokens per second of step time."
    )
    return table


def beam_table(results: Results) -> Table:
    columns = ["size", "batch", "model", "tok/s", "ms/step", "matmul ms/step", "vs BART"]
    table = Table("Beam search, 5 beams, length_penalty 1.0, early stopping (EOS ignored, fixed steps)", columns)
    bart = {(r.size, r.batch): r for r in results.beam if r.model == BART}
    config = results.config
    for r in results.beam:
        ref = bart.get((r.size, r.batch))
        table.add(
            r.size,
            r.batch,
            r.model,
            r.tokens_per_s,
            fmt(r.ms_per_step, 1),
            "-" if r.matmul_s is None else fmt(1e3 * r.matmul_s / config.get("beam_new_tokens", 1), 1),
            ratio(r.tokens_per_s, ref and ref.tokens_per_s),
        )
    table.notes.append(
        f"fp32, {config.get('beam_new_tokens')} steps from a {config.get('beam_src_len')}-token source; tok/s = batch "
        "x steps / best whole call. ours: generate() packing its weights inside the call; ours (packed once): "
        "the weights packed before the timed call, as in a process that generates many batches; ours (compiled "
        "step): generate(compile=True), compiled in an untimed warm-up. matmul ms/step: the time one more call "
        "spends in matmul ops alone (MatmulTimer; not for the compiled step, which runs eagerly under the timer's "
        "dispatch mode)."
    )
    return table


def memory_table(results: Results) -> Table:
    columns = ["size", "dtype", "model", "after fwd MB", "with ckpt MB", "ckpt / plain", "vs BART (plain)"]
    has_peak = any(r.peak_mb is not None for r in results.memory)
    if has_peak:
        columns += ["peak MB", "peak ckpt MB"]
    table = Table("Memory after the forward pass, with and without gradient checkpointing", columns)
    by_key = {(r.size, r.dtype, r.model): r for r in results.memory}
    for r in results.memory:
        bart = by_key.get((r.size, r.dtype, BART))
        cells = [r.size, r.dtype, r.model, fmt(r.forward_mb), fmt(r.forward_ckpt_mb), f"{r.ratio:.2f}x"]
        cells.append(ratio(r.forward_mb, bart.forward_mb if bart else None))
        if has_peak:
            cells += [fmt(r.peak_mb), fmt(r.peak_ckpt_mb)]
        table.add(*cells)
    table.notes.append("bytes allocated by the forward pass (saved activations + logits), parameters excluded.")
    return table


def lever_table(results: Results) -> Table:
    table = Table(
        "Levers (our model; each against its own baseline, same run)",
        ["lever", "size", "setting", "metric", "value", "baseline", "effect"],
    )
    for r in results.levers:
        table.add(r.lever, r.size, r.setting, r.metric, fmt(r.value, 1), fmt(r.baseline, 1), f"{r.effect:.2f}x")
    return table


def goal_table(results: Results) -> Table:
    table = Table("Goals", ["goal", "measured", "target", "met", "ceiling"])
    for goal, value in evaluate(results):
        table.add(
            goal.name,
            f"{value:.2f}x",
            f"{'<=' if goal.at_most else '>='} {goal.target:.2f}x",
            "yes" if goal.met(value) else "NO",
            "-" if goal.ceiling is None else f"{goal.ceiling:.2f}x",
        )
    table.notes.append(
        "ceiling (training): the ratio to BART if our step ran at 100% of this run's matmul peak for the dtype "
        "with no other work at all; a target above it cannot be met on this machine. ceiling (memory): the "
        "hidden states alone, no head and no loss, over the step as filed (full logits, every activation "
        "stored); no loss can go below it. ceiling (beam): BART's call over the seconds our call spends in its "
        "matmuls alone, on our kernels (everything else at zero cost)."
    )
    return table


def contention_table(results: Results) -> Table:
    table = Table("CPUs busy with other processes while measuring (0 = a quiet machine)", ["section", "other CPUs"])
    for section, value in results.contention.items():
        table.add(section, fmt(value, 2))
    return table


def tables(results: Results) -> list[Table]:
    out = []
    if results.peaks:
        out.append(peak_table(results))
    if results.train:
        out.append(train_table(results))
    if results.compiled:
        out.append(compiled_table(results.compiled))
    if results.generate:
        out.append(generate_table(results))
    if results.realdata:
        out.append(realdata_table(results))
    if results.beam:
        out.append(beam_table(results))
    if results.attention:
        out.append(attention_table(results.attention))
    if results.memory:
        out.append(memory_table(results))
    if results.loss_memory:
        out.append(loss_memory_table(results.loss_memory))
    if results.levers:
        out.append(lever_table(results))
    if results.tokenize:
        out.append(tokenize_table(results.tokenize))
    if evaluate(results):
        out.append(goal_table(results))
    if results.contention:
        out.append(contention_table(results))
    return out


def text(results: Results) -> str:
    header = f"enhanced-tx bench: {one_line(results.machine)}"
    return "\n\n".join([header] + [t.text() for t in tables(results)])


def markdown(results: Results) -> str:
    header = f"Machine: {one_line(results.machine)}"
    return "\n\n".join([header] + [t.markdown() for t in tables(results)]) + "\n"
