"""The reference contender of the quality bench: a stock Hugging Face BART trained as an HF user would.

`BartForConditionalGeneration` from a `BartConfig` of our tiny shape (random init, dropout 0.1), sources
`<s> text </s>` and labels `text </s>` (the BOS label is left out so that both contenders' losses average
over the same tokens), random batches padded to the longest by `DataCollatorForSeq2Seq`, AdamW (lr 1e-3,
weight decay 0.01 on all but biases and LayerNorm weights, as HF's Trainer groups them), 200 warmup
steps then cosine to 1e-4, no clipping, greedy `generate`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import torch
from tokenizers.processors import TemplateProcessing
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerFast,
    get_cosine_with_min_lr_schedule_with_warmup,
)

from enhanced_tx.bench.quality_result import Curve, Point, QualitySpec

Pair = tuple[str, str]
WARMUP_STEPS = 200
MIN_LR = 1e-4


def hf_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The same BPE with BART's template: `<s> text </s>` sources, `text </s>` targets."""
    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    backend.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        special_tokens=[(bos, tokenizer.bos_token_id), (eos, tokenizer.eos_token_id)],
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer.special_tokens_map)
    return wrapped


def build_bart(tokenizer: PreTrainedTokenizerFast, spec: QualitySpec) -> BartForConditionalGeneration:
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=spec.d_model,
        encoder_layers=spec.n_layers,
        decoder_layers=spec.n_layers,
        encoder_attention_heads=spec.n_heads,
        decoder_attention_heads=spec.n_heads,
        encoder_ffn_dim=spec.ffn,
        decoder_ffn_dim=spec.ffn,
        max_position_embeddings=spec.max_len + 2,
        dropout=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    return BartForConditionalGeneration(config)


def encode(tokenizer: PreTrainedTokenizerFast, pairs: Sequence[Pair], max_len: int) -> list[dict]:
    hf = hf_tokenizer(tokenizer)
    src = hf([s for s, _ in pairs], truncation=True, max_length=max_len)["input_ids"]
    tgt = hf([t for _, t in pairs], truncation=True, max_length=max_len + 1)["input_ids"]
    return [{"input_ids": s, "labels": t[1:]} for s, t in zip(src, tgt, strict=True)]  # labels: text </s>


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """HF Trainer's rule: no decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "layernorm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def val_loss(model: BartForConditionalGeneration, batches: list[dict], precision: str) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        with _autocast(precision):
            logits = model(**batch).logits
        labels = batch["labels"]
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
        ).item()
        count += int((labels != -100).sum())
    model.train()
    return total / max(count, 1)


@torch.no_grad()
def translate(
    model: BartForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    sources: Sequence[str],
    spec: QualitySpec,
    precision: str,
) -> list[str]:
    model.eval()
    hf = hf_tokenizer(tokenizer)
    out: list[str] = []
    for start in range(0, len(sources), spec.batch_size):
        batch = hf(list(sources[start : start + spec.batch_size]), padding=True, return_tensors="pt")
        with _autocast(precision):
            ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=spec.max_new_tokens)
        out.extend(hf.batch_decode(ids, skip_special_tokens=True))
    return out


def train_bart(
    tokenizer: PreTrainedTokenizerFast,
    train: Sequence[Pair],
    val: Sequence[Pair],
    spec: QualitySpec,
    steps: int,
    seconds: float | None,
    precision: str,
    log: Callable[[str], None] = print,
) -> tuple[BartForConditionalGeneration, Curve]:
    """Train for `steps` optimizer steps (the schedule's length), or until `seconds` of training time."""
    torch.manual_seed(spec.seed)
    model = build_bart(tokenizer, spec)
    collator = DataCollatorForSeq2Seq(hf_tokenizer(tokenizer), model=model, label_pad_token_id=-100)
    items = encode(tokenizer, train, spec.max_len)
    val_batches = [collator(encode(tokenizer, val[i : i + 64], spec.max_len)) for i in range(0, len(val), 64)]
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.01), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, WARMUP_STEPS, steps, min_lr=MIN_LR)
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=spec.batch_size,
        shuffle=True,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(spec.seed),
    )
    curve = Curve(name="bart")
    step, train_seconds, tokens, padded = 0, 0.0, 0, 0
    model.train()
    while step < steps and (seconds is None or train_seconds < seconds):
        for batch in loader:
            started = time.perf_counter()
            with _autocast(precision):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = loss.item()
            train_seconds += time.perf_counter() - started
            step += 1
            real = int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
            tokens += real
            padded += batch["input_ids"].numel() + batch["labels"].numel()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"BART's loss is {loss_value} at step {step}")
            if step % spec.eval_every == 0 or step == steps:
                loss_val = val_loss(model, val_batches, precision)
                curve.points.append(Point(step, train_seconds, loss_val))
                speed = tokens / train_seconds
                log(f"bart step {step}: val/loss {loss_val:.4f} ({train_seconds:.0f}s, {speed:.0f} tok/s)")
            if step >= steps or (seconds is not None and train_seconds >= seconds):
                break
    if not curve.points or curve.points[-1].step != step:
        curve.points.append(Point(step, train_seconds, val_loss(model, val_batches, precision)))
    curve.tokens, curve.padded_tokens, curve.train_seconds = tokens, padded, train_seconds
    return model, curve
