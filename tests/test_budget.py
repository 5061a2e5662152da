"""Compute budgets: minutes, tokens and FLOPs end a run fairly, and the FLOP count is the hand count."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from enhanced_tx.data.collate import Collator
from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.errors import ConfigError
from enhanced_tx.training import Budget, WarmupCosine

from .conftest import make_model
from .test_training import copy_parts, quiet_trainer


class RaggedTask(Dataset):
    """Sources and targets of varied lengths, so batches carry padding that must not be counted."""

    def __init__(self, n: int = 64) -> None:
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(n):
            s, t = torch.randint(2, 12, (2,), generator=generator).tolist()
            self.items.append(
                {
                    "src": torch.randint(4, 40, (s,), generator=generator),
                    "tgt": torch.randint(4, 40, (t,), generator=generator),
                }
            )
        self.lengths = [len(i["src"]) + len(i["tgt"]) for i in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_token_budget_counts_non_padding_tokens_exactly(tmp_path):
    parts = copy_parts(tmp_path)
    parts.train_set = RaggedTask()
    budget_tokens = 300
    trainer = quiet_trainer(max_steps=None, budget={"tokens": budget_tokens}, eval_every=1000, length_bucketing=False)
    trainer.fit(parts)

    # The same batches, counted independently: real source tokens + real target tokens per batch.
    sampler = EpochBatchSampler(len(parts.train_set), 8, seed=0)
    seen, steps = 0, 0
    for indices in sampler:
        seen += sum(len(parts.train_set[i]["src"]) + len(parts.train_set[i]["tgt"]) for i in indices)
        steps += 1
        if seen >= budget_tokens:
            break
    last = [r for r in _rows(tmp_path) if "perf/tokens" in r][-1]
    assert last["perf/tokens"] == seen and last["step"] == steps
    batch = Collator(0, 1)([parts.train_set[i] for i in next(iter(EpochBatchSampler(64, 8, seed=0)))])
    assert batch.src.numel() + batch.labels.numel() > int(batch.num_tokens)  # the data really is padded


def test_minutes_budget_stops_within_one_step_and_finishes_the_schedule(tmp_path):
    parts = copy_parts(tmp_path)
    schedule = WarmupCosine(warmup=0.1, min_lr_ratio=0.1)
    parts.schedule = schedule
    minutes, base = 0.03, 1e-3
    quiet_trainer(max_steps=None, budget={"minutes": minutes}, eval_every=10_000).fit(parts)
    rows = [r for r in _rows(tmp_path) if "perf/train_minutes" in r]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # log_every=1: one row per step
    # stopped at the first step boundary past the limit: under it before the last step, over it after
    assert rows[-2]["perf/train_minutes"] < minutes <= rows[-1]["perf/train_minutes"]
    # every step's LR is the schedule at the budget fraction used before that step: laid out over the minutes
    used_before = [0.0] + [r["perf/train_minutes"] / minutes for r in rows[:-1]]
    for row, progress in zip(rows, used_before, strict=True):
        assert row["train/lr"] == pytest.approx(base * schedule(progress), rel=1e-9)
    assert used_before[-1] > 0.5 and rows[-1]["perf/train_minutes"] / minutes >= 1.0  # the schedule ran out


def test_the_first_limit_reached_ends_the_run(tmp_path):
    parts = copy_parts(tmp_path)
    quiet_trainer(max_steps=5, budget={"tokens": 10**9}, eval_every=1000).fit(parts)
    assert _rows(tmp_path)[-1]["step"] == 5


def test_a_run_without_any_limit_is_a_clear_error():
    with pytest.raises(ConfigError, match="trainer.max_steps"):
        Budget()
    with pytest.raises(ConfigError, match="trainer.budget.tokens=-5"):
        Budget(tokens=-5)


def test_flop_count_matches_a_hand_computation():
    d, v, s, t = 32, 64, 10, 6  # d_model, padded vocab, source and target lengths; 4 heads, 1+1 layers, ffn 4d
    model = make_model("rope", vocab_size=v, d_model=d, n_encoder_layers=1, n_decoder_layers=1)
    encoder = s * (2 * d * 3 * d + 2 * d * d + 2 * 2 * d * 4 * d)  # fused QKV, output, GELU MLP (2 matrices)
    encoder += 2 * 2 * d * s * s  # scores QK^T and weighted sum AV: 2·d each per (query, key) pair
    decoder = t * (2 * d * 3 * d + 2 * d * d)  # self-attention projections
    decoder += t * (2 * d * d + 2 * d * d) + s * (2 * d * 2 * d)  # cross: Q and output per target, KV per source
    decoder += t * (2 * 2 * d * 4 * d)  # MLP
    decoder += 4 * d * (t * (t + 1) // 2)  # causal self-attention: only the t(t+1)/2 visible pairs
    decoder += 4 * d * t * s  # cross-attention pairs
    head = 2 * d * v * t
    expected = encoder + decoder + head
    assert model.forward_flops(s, t) == expected
    assert model.flops_per_token(s, t) == pytest.approx(3 * expected / (s + t))
