"""Training on real-shaped data: our tiny model through our data path against HF BART through HF's.

Both train on the same generated pairs (`realdata_pairs`: log-normal lengths 3..120 tokens), the same token
ids, the same optimizer (fused AdamW, lr 1e-3, the trainer's parameter groups), one thread each, for the
same number of seconds of step time. Steps alternate between the contenders, so a busy neighbour slows
them alike; ours and ours-without-padding swap turns every round, so neither always meets a new shape
first. Step time includes fetching and collating the batch.

- ours: `data=pairs` with `data.max_tokens_per_batch` (token-budget batches, length bucketed) through
  `MapStyleBatches` and the trainer's loss (`micro_batch_loss` with the default `trainer.pack_tokens=auto`,
  divided by the target tokens).
- ours, no padding: our model on random batches of exactly the shapes the real batches had, every position
  a real token: the padding-free speed our real-data figure is compared with.
- ours, random batches / the same, padding computed: our model on BART's kind of batches (random, `bart_batch`
  pairs, padded to the longest; the same batches for both, in lockstep) with `trainer.pack_tokens=auto` and
  with `false`: what the padding-free path buys where padding is most of a batch.
- bart: `BartForConditionalGeneration` of the same shape, random batches of `bart_batch` pairs from a
  shuffling `DataLoader`, padded to the longest by `DataCollatorForSeq2Seq`, loss from `labels=`.

Tokens/s counts non-padding source + target tokens; padding is the fraction of batch positions (source and
target) that hold padding; loss is the mean training loss per target token over the last steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from enhanced_tx.bench.peers import build_bart, build_ours
from enhanced_tx.bench.realdata_pairs import word_tokenizer, write_pairs
from enhanced_tx.bench.shapes import Shape
from enhanced_tx.bench.timing import time_once
from enhanced_tx.bench.training import AUTOCAST_DTYPES, build_optimizer
from enhanced_tx.data import PairsData
from enhanced_tx.data.collate import IGNORE_INDEX, Collator
from enhanced_tx.training.batches import MapStyleBatches
from enhanced_tx.training.loss import token_loss_sum
from enhanced_tx.training.step_loss import micro_batch_loss

OURS_REAL, OURS_NOPAD, BART_REAL = "ours", "ours (same shapes, no padding)", "bart"
OURS_RANDOM, OURS_RANDOM_PADDED = "ours, random batches", "ours, random batches, padding computed"
TRAINER_CHUNK_TOKENS = 4096  # trainer.loss_chunk_tokens' default (conf/trainer/default.yaml)
LR = 1e-3
LOSS_WINDOW = 20  # steps averaged for the loss at the end


@dataclass
class RealDataResult:
    dtype: str
    model: str
    steps: int
    seconds: float
    tokens_per_s: float  # non-padding source + target tokens per second of step time
    padding: float  # fraction of batch positions holding padding
    loss: float | None  # mean training loss per target token over the last LOSS_WINDOW steps


@dataclass
class RealDataSpec:
    pairs: int = 20000
    seconds: float = 20.0  # of step time, per contender and dtype
    batch_size: int = 64  # ours: at most this many pairs per batch ...
    max_tokens: int = 2048  # ... and items x (longest source + longest target) <= this
    bart_batch: int = 32  # pairs per BART batch


@dataclass
class _Step:
    real: int
    positions: int
    loss: float | None


class _Contender:
    def __init__(self, name: str, step: Callable[[], _Step]) -> None:
        self.name, self.step = name, step
        self.seconds, self.steps, self.real, self.positions, self.losses = 0.0, 0, 0, 0, []

    def run_one(self, device: torch.device) -> None:
        out: list[_Step] = []
        self.seconds += time_once(lambda: out.append(self.step()), device)
        self.steps += 1
        self.real, self.positions = self.real + out[0].real, self.positions + out[0].positions
        if out[0].loss is not None:
            self.losses.append(out[0].loss)

    def result(self, dtype: str) -> RealDataResult:
        window = self.losses[-LOSS_WINDOW:]
        return RealDataResult(
            dtype=dtype,
            model=self.name,
            steps=self.steps,
            seconds=self.seconds,
            tokens_per_s=self.real / self.seconds,
            padding=1.0 - self.real / self.positions,
            loss=sum(window) / len(window) if window else None,
        )


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    optimizer = build_optimizer(model, "fused")
    for group in optimizer.param_groups:
        group["lr"] = LR
    return optimizer


def _autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    if dtype not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[dtype])


def _ours_step(
    model: torch.nn.Module, batches: Iterator, dtype: str, device: torch.device, pack: bool | str = "auto"
) -> Callable[[], _Step]:
    optimizer = _optimizer(model.train())

    def step() -> _Step:
        batch = next(batches)
        with _autocast(dtype, device):
            summed, _ = micro_batch_loss(model, model, batch, chunk_tokens=TRAINER_CHUNK_TOKENS, pack=pack)
        loss = summed / batch.num_tgt_tokens
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return _Step(int(batch.num_tokens), batch.src.numel() + batch.labels.numel(), loss.item())

    return step


def _nopad_step(model, shapes: Iterator, vocab: int, dtype: str, device: torch.device) -> Callable[[], _Step]:  # noqa: ANN001
    optimizer = _optimizer(model.train())
    generator = torch.Generator().manual_seed(0)

    def step() -> _Step:
        b, s, t = next(shapes)
        src, tgt_in, labels = (torch.randint(4, vocab, (b, n), generator=generator).to(device) for n in (s, t, t))
        with _autocast(dtype, device):
            logits = model(src, tgt_in)
        loss = token_loss_sum(logits, labels, vocab_size=model.vocab_size) / labels.numel()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return _Step(b * (s + t), b * (s + t), None)

    return step


def _bart_step(model, loader: Iterator, dtype: str, device: torch.device) -> Callable[[], _Step]:  # noqa: ANN001
    optimizer = _optimizer(model.train())

    def step() -> _Step:
        batch = {k: v.to(device) for k, v in next(loader).items()}
        with _autocast(dtype, device):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        real = int(batch["attention_mask"].sum() + (batch["labels"] != IGNORE_INDEX).sum())
        return _Step(real, batch["input_ids"].numel() + batch["labels"].numel(), loss.item())

    return step


def _endless(make: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make()


def measure_realdata(
    shape: Shape, dtypes: list[str], spec: RealDataSpec, device: torch.device, workdir: Path
) -> list[RealDataResult]:
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForSeq2Seq

    tokenizer = word_tokenizer(shape.vocab)
    path = write_pairs(workdir / "realdata_pairs.jsonl", spec.pairs, shape.vocab)
    data = PairsData(str(path), max_tokens_per_batch=spec.max_tokens, val_fraction=0.01)
    train, _ = data.build(tokenizer)
    collator = Collator(tokenizer.pad_token_id, tokenizer.bos_token_id)

    def batches() -> MapStyleBatches:  # a fresh source: the same batch order from the start
        return MapStyleBatches(train, collator, spec.batch_size, device=device, max_tokens=spec.max_tokens)

    def random_batches() -> Iterator:  # BART's kind of batches through our collator, the same order each call
        generator = torch.Generator().manual_seed(0)
        while True:
            order = torch.randperm(len(train), generator=generator).tolist()
            for i in range(0, len(order) - spec.bart_batch + 1, spec.bart_batch):
                yield collator([train[j] for j in order[i : i + spec.bart_batch]]).to(device)

    def shapes() -> Iterator[tuple[int, int, int]]:
        for batch in batches():
            yield len(batch), batch.src.shape[1], batch.labels.shape[1]

    features = [{"input_ids": item["src"].tolist(), "labels": item["tgt"].tolist()} for item in train]
    results = []
    for dtype in dtypes:
        torch.manual_seed(0)
        ours, nopad, bart = build_ours(shape).model, build_ours(shape).model, build_bart(shape).model
        packed, padded = build_ours(shape).model, build_ours(shape).model
        bart.config.update(dict(pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.bos_token_id))
        for model in (ours, nopad, bart, packed, padded):
            model.to(device)
        hf_collator = DataCollatorForSeq2Seq(tokenizer, model=bart, padding="longest")
        loader = _endless(
            partial(DataLoader, features, batch_size=spec.bart_batch, shuffle=True, collate_fn=hf_collator)
        )
        real = _Contender(OURS_REAL, _ours_step(ours, iter(batches()), dtype, device))
        padding_free = _Contender(OURS_NOPAD, _nopad_step(nopad, shapes(), shape.vocab, dtype, device))
        hf = _Contender(BART_REAL, _bart_step(bart, loader, dtype, device))
        random_packed = _Contender(OURS_RANDOM, _ours_step(packed, random_batches(), dtype, device, "auto"))
        random_padded = _Contender(OURS_RANDOM_PADDED, _ours_step(padded, random_batches(), dtype, device, False))
        contenders = [real, padding_free, random_packed, random_padded, hf]
        for contender in contenders:  # warm-up steps, not counted
            contender.step()
        rounds = 0
        while any(c.seconds < spec.seconds for c in contenders):
            # The two runs of ours take the same shapes in lockstep, and whichever meets a shape first pays its
            # one-time costs (oneDNN builds kernels for it): they take turns (bf16 0.81x -> 0.93x of padding-free).
            order = contenders if rounds % 2 == 0 else [padding_free, real, random_padded, random_packed, hf]
            for contender in order:
                if contender.seconds < spec.seconds:
                    contender.run_one(device)
            rounds += 1
        results += [c.result(dtype) for c in contenders]
    return results
