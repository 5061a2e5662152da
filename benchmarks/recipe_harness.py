"""Our model and HF BART under ONE recipe: the quality bench's diagnostic (docs/benchmarks.md, "Quality").

Both arms train on identical random batches (`DataCollatorForSeq2Seq`, BART's `<s> text </s>` sources unless
`--src none`), with the same AdamW and warmup-cosine schedule, the same loss over the real vocabulary and the
same validation set, so any gap left is the model's. One arm per process:

    python benchmarks/recipe_harness.py --arm ours            # our model (project defaults) under BART's recipe
    python benchmarks/recipe_harness.py --arm bart
    python benchmarks/recipe_harness.py --arm ours --warmup 25  # one recipe change at a time
    python benchmarks/recipe_harness.py --arm ours --over norm=layernorm residual=post_norm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import DataCollatorForSeq2Seq, get_cosine_with_min_lr_schedule_with_warmup

import enhanced_tx
from enhanced_tx.bench.quality_bart import build_bart, encode, hf_tokenizer, optimizer_groups
from enhanced_tx.bench.quality_result import QualitySpec
from enhanced_tx.data import BPETokenizer, PairsData
from enhanced_tx.data.catalog_pairs import build_catalog_pairs

CONF = Path(enhanced_tx.__file__).resolve().parents[1] / "conf"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", default="ours", choices=["ours", "bart"])
    p.add_argument("--over", nargs="*", default=[], help="run_train.py overrides that shape our model")
    p.add_argument("--src", default="bos_eos", choices=["bos_eos", "eos", "none"], help="special tokens on sources")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200, help="warmup steps (then cosine to lr / 10)")
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=None, help="gradient-norm clipping (default: none, as BART)")
    p.add_argument("--bf16", action="store_true")
    return p


def main() -> None:
    a = parser().parse_args()
    torch.set_num_threads(1)
    spec = QualitySpec()
    data = build_catalog_pairs(None)
    pairs = PairsData(str(data.train), val_path=str(data.val))
    train, val = pairs.split()
    tokenizer = BPETokenizer().build(pairs.tokenizer_corpus())
    cut = {"bos_eos": slice(None), "eos": slice(1, None), "none": slice(1, -1)}[a.src]
    items, val_items = (
        [{"input_ids": i["input_ids"][cut], "labels": i["labels"]} for i in encode(tokenizer, part, spec.max_len)]
        for part in (train, val)
    )
    torch.manual_seed(spec.seed)
    if a.arm == "bart":
        model = build_bart(tokenizer, spec)
    else:
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            model = instantiate(compose("train", overrides=a.over).model, vocab_size=len(tokenizer))
    collator = DataCollatorForSeq2Seq(hf_tokenizer(tokenizer), label_pad_token_id=-100)
    groups = optimizer_groups(model, a.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=a.lr, betas=tuple(a.betas), eps=1e-8)
    schedule = get_cosine_with_min_lr_schedule_with_warmup(optimizer, a.warmup, a.steps, min_lr=a.lr / 10)
    generator = torch.Generator().manual_seed(spec.seed)
    loader = torch.utils.data.DataLoader(items, batch_size=64, shuffle=True, collate_fn=collator, generator=generator)
    val_batches = [collator(val_items[i : i + 64]) for i in range(0, len(val_items), 64)]

    def loss_sum(batch: dict) -> tuple[torch.Tensor, int]:
        labels = batch["labels"]
        if a.arm == "bart":  # BART shifts the labels itself (decoder_start_token_id = EOS)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
        else:  # ours: BOS then the labels shifted right, as enhanced_tx.data.collate does
            tgt_in = torch.full_like(labels, tokenizer.pad_token_id)
            tgt_in[:, 0] = tokenizer.bos_token_id
            tgt_in[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, tokenizer.pad_token_id)
            logits = model(batch["input_ids"], tgt_in, batch["attention_mask"].bool())[..., : len(tokenizer)]
        total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
        return total, int((labels != -100).sum())

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
    step, started, curve = 0, time.time(), []
    model.train()
    while step < a.steps:
        for batch in loader:
            with autocast:
                total, count = loss_sum(batch)
            (total / count).backward()
            if a.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % a.eval_every == 0:
                model.eval()
                with torch.no_grad(), autocast:
                    sums = [loss_sum(b) for b in val_batches]
                model.train()
                curve.append((step, round(sum(float(s) for s, _ in sums) / sum(n for _, n in sums), 3)))
                print(f"{a.arm} step {step}: val/loss {curve[-1][1]} ({time.time() - started:.0f}s)", flush=True)
            if step >= a.steps:
                break
    print(json.dumps({"arm": a.arm, "args": vars(a), "val_loss": curve}))


if __name__ == "__main__":
    main()
