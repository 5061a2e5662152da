"""`evaluate(cfg)`: the composition root of `run_eval.py` (score a trained run on a test file, record, report)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from enhanced_tx.data import PairsData, SampleData
from enhanced_tx.data.collate import Collator
from enhanced_tx.data.pairs_format import read_pairs
from enhanced_tx.data.source_markers import run_source_markers
from enhanced_tx.evaluation.during_training import default_max_new_tokens
from enhanced_tx.evaluation.language_model import evaluate_loss
from enhanced_tx.evaluation.metrics import MetricSettings
from enhanced_tx.evaluation.records import (
    checkpoint_info,
    next_log_step,
    output_name,
    scalar_metrics,
    write_record,
    write_rows,
)
from enhanced_tx.evaluation.tracking import log_to_run
from enhanced_tx.evaluation.translation import evaluate_translation
from enhanced_tx.generation.loading import LoadedRun, load_run, resolve_run_dir
from enhanced_tx.generation.results import check_max_new_tokens, positive_setting
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.runtime.device import resolve_device

TRANSLATION_METRICS = ("bleu", "chrf", "exact_match", "mean_output_tokens", "tokens_per_s", "count")
LOSS_METRICS = ("loss", "perplexity", "target_tokens", "tokens_per_s")
TABLE_ROWS = 1000  # hypotheses logged to W&B as a table (all of them are in eval/<name>.jsonl)


def evaluate(cfg: DictConfig) -> dict:
    """Load the run `cfg.run` selects, score it on `cfg.data`, write eval/<name>.{json,jsonl}, log, return
    the record written to eval/<name>.json."""
    positive_setting(cfg, "batch_size")  # numbers checked before any loading, as run_generate.py does
    if cfg.max_new_tokens is not None:  # null: the run's data.max_tgt_len (see _translation)
        positive_setting(cfg, "max_new_tokens")
    device = resolve_device(cfg.device)
    precision = instantiate(cfg.precision)
    precision.check_device(device)
    run_dir = resolve_run_dir(cfg.run, cfg.runs_root, cfg.get("sweep"))
    run = load_run(run_dir, cfg.checkpoint, device=device, dtype=precision.dtype)
    # precision=auto: fp32 or bf16 weights, resolved as training resolves it (measured, cached per machine)
    precision = precision.resolve(run.model, device, say=lambda line: print(line, file=sys.stderr))
    run.model.to(dtype=precision.dtype)
    info = checkpoint_info(run.run_dir, run.weights)
    data = instantiate(cfg.data)
    name = output_name(cfg.get("name"), getattr(data, "path", None))
    print(f"run: {run.run_dir}  weights: {run.weights.name} (step {info.get('step')})", file=sys.stderr)

    record: dict = {
        "name": name,
        "run": str(run.run_dir.resolve()),
        "weights": str(run.weights.resolve()),
        "step": info.get("step"),
        "data": str(getattr(data, "path", "") or "sample corpus (validation split)"),
        "precision": precision.name,
        "device": str(device),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    folder = RunFolder(run.run_dir).eval_dir
    rows = None
    if isinstance(data, PairsData):
        rows, scores = _translation(cfg, run, data, device)
        record.update(kind="translation", sampler=OmegaConf.to_container(cfg.sampler, resolve=True), **scores)
        write_rows(folder / f"{name}.jsonl", rows)
        keys = TRANSLATION_METRICS
        _print_translation(record)
    else:
        record.update(kind="language_model", **_language_model(cfg, run, data, device))
        keys = LOSS_METRICS
        print(
            f"loss {record['loss']:.4f}  perplexity {record['perplexity']:.2f}  over {record['target_tokens']} "
            f"target tokens ({record['windows']} windows)"
        )
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    if cfg.log_to_run:
        record["log_step"] = next_log_step(run.run_dir)
    write_record(folder / f"{name}.json", record)
    print(f"wrote {folder / name}.json" + (f" and {name}.jsonl" if rows is not None else ""))
    if cfg.log_to_run:
        _log(run, info, name, record, keys, rows)
    return record


def _translation(cfg: DictConfig, run: LoadedRun, data: PairsData, device) -> tuple[list[dict], dict]:
    pairs = read_pairs(data.path, "data.path", data.format, data.source_field, data.target_field, data.skip_bad_lines)
    max_tgt_len = OmegaConf.select(run.config, "data.max_tgt_len")  # the longest target the run learned
    max_new_tokens = cfg.max_new_tokens or default_max_new_tokens(run.model.max_seq_len, max_tgt_len)
    check_max_new_tokens(max_new_tokens, run.model.max_seq_len, run.run_dir)
    print(
        f"test: {data.path} ({len(pairs)} pairs)  sampler: {cfg.sampler._target_.rsplit('.', 1)[-1]}  "
        f"max_new_tokens: {max_new_tokens}",
        file=sys.stderr,
    )
    result = evaluate_translation(
        run.model,
        run.tokenizer,
        pairs,
        sampler=instantiate(cfg.sampler),
        max_src_len=data.max_src_len,
        max_new_tokens=max_new_tokens,
        batch_size=cfg.batch_size,
        device=device,
        settings=MetricSettings(**cfg.metrics),
        seed=cfg.seed,
        progress=cfg.progress_bar,
        source_markers=run_source_markers(run.config),  # as the run was trained, not as data= says
    )
    return result.rows, result.summary()


def _language_model(cfg: DictConfig, run: LoadedRun, data, device) -> dict:
    run.model.check_lengths(data.src_len, data.tgt_len)
    if not isinstance(data, SampleData):  # a text file: all of it, windowed as training windows a val_path
        data.val_path = data.path
    _, dataset = data.build(run.tokenizer, cfg.paths.cache_dir)  # the sample corpus: its held-out tail
    collator = Collator(pad_id=run.tokenizer.pad_token_id, bos_id=run.tokenizer.bos_token_id)
    return evaluate_loss(
        run.model, dataset, collator, batch_size=cfg.batch_size, device=device, progress=cfg.progress_bar
    )


def _print_translation(record: dict) -> None:
    print(record["bleu_verbose"])
    print(record["chrf_verbose"])
    print(f"sacrebleu signatures: BLEU {record['bleu_signature']}  chrF {record['chrf_signature']}")
    print(
        f"exact match {record['exact_match']:.2f}%  mean output {record['mean_output_tokens']:.1f} tokens  "
        f"{record['tokens_per_s']:.0f} tokens/s  ({record['count']} sentences"
        + (f", {record['truncated_sources']} sources truncated)" if record["truncated_sources"] else ")")
    )


def _log(run: LoadedRun, info: dict, name: str, record: dict, keys, rows) -> None:
    run_id = info.get("logger_run_id")
    summary = {k: record[k] for k in ("bleu_signature", "chrf_signature", "step") if record.get(k) is not None}
    table = None
    if rows is not None:
        columns = ["source", "reference", "hypothesis"]
        table = (columns, [[row[c] for c in columns] for row in rows[:TABLE_ROWS]])
    logger = log_to_run(
        run.config,
        Path(run.run_dir),
        resume_id=run_id,
        prefix=f"eval/{name}",
        metrics=scalar_metrics(record, keys),
        summary=summary,
        step=record["log_step"],
        table=table,
    )
    new_id = getattr(logger, "run_id", None)
    if new_id is not None:
        where = f"resumed run {run_id}" if run_id else f"a new run {new_id} (the checkpoint holds no run id)"
        print(f"logged to {type(logger).__name__}: {where}", file=sys.stderr)
