"""Compiled training (trainer.compile): bucketed padding that leaves the loss alone, per-block compilation
whose gradients match eager for every norm x positional x attention option, and few compilations over many
lengths. Backend aot_eager: the same graphs dynamo and AOTAutograd capture, without inductor's C++ build
(about a minute per graph on this CPU), so the tests stay fast; inductor is what the bench times."""

from __future__ import annotations

import dataclasses
import itertools
import json
from functools import partial

import pytest
import torch
import torch._dynamo
from torch.utils.data import Dataset

from enhanced_tx.data.collate import Collator
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.model import AttentionSpec, GeluMLP, LayerNorm, RMSNorm, SwiGLU
from enhanced_tx.tracking.logger import MetricLogger
from enhanced_tx.training import Precision, Trainer, TrainingParts, WarmupCosine
from enhanced_tx.training.compiling import (
    CompiledBlocks,
    PaddedCollator,
    bucket_length,
    compilations,
    resolve_pad_to,
)
from enhanced_tx.training.loss import token_loss_sum

from .conftest import POSITIONAL_SCHEMES, make_model

NORMS = {"rmsnorm": (RMSNorm, GeluMLP), "layernorm": (LayerNorm, SwiGLU)}
ATTENTIONS = {"mha": None, "gqa": 2, "mqa": 1}  # conf/attention/ at 4 heads
PRODUCT = list(itertools.product(NORMS, POSITIONAL_SCHEMES, ATTENTIONS))
# every option at least once, fast; the full product is marked slow
PAIRS = [("rmsnorm", "mha"), ("layernorm", "gqa"), ("rmsnorm", "mqa"), ("layernorm", "mha"), ("rmsnorm", "gqa"),
         ("layernorm", "mqa")]  # fmt: skip
COVERING = [(norm, positional, attn) for positional, (norm, attn) in zip(POSITIONAL_SCHEMES, PAIRS, strict=True)]


class VariedLengths(Dataset):
    """Pairs of every length from 1 to 40 a side, shuffled: a long spread of shapes."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = [_pair(g, *(int(x) for x in torch.randint(1, 41, (2,), generator=g)), high=40) for _ in range(n)]
        self.lengths = [len(i["src"]) + len(i["tgt"]) for i in self.items]  # length bucketing

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # each case compiles from scratch (no cache limit reached by earlier cases)
    yield
    torch._dynamo.reset()


def _tiny(norm: str, positional: str, attention: str):
    norm_cls, ffn = NORMS[norm]
    return make_model(positional, norm=norm_cls, feedforward=ffn, n_encoder_layers=1, n_decoder_layers=1,
                      attention=AttentionSpec(n_kv_heads=ATTENTIONS[attention])).train()  # fmt: skip


def _pair(g: torch.Generator, s: int, t: int, high: int = 90) -> dict:
    return {"src": torch.randint(4, high, (s,), generator=g), "tgt": torch.randint(4, high, (t,), generator=g)}


def _batch(seed: int = 0, n: int = 3) -> list[dict]:
    """`n` pairs of 3-11 source and 2-11 target tokens: lengths that differ within the batch."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.stack([torch.randint(3, 12, (n,), generator=g), torch.randint(2, 12, (n,), generator=g)], 1)
    return [_pair(g, int(s), int(t)) for s, t in lengths]


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = token_loss_sum(model(batch.src, batch.tgt_in, batch.src_mask), batch.labels, vocab_size=model.vocab_size)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_buckets_round_up_to_multiples_or_powers_of_two_within_the_cap():
    assert [bucket_length(n, 16) for n in (1, 16, 17, 40)] == [16, 16, 32, 48]
    assert [bucket_length(n, "pow2") for n in (1, 17, 33, 100)] == [16, 32, 64, 128]
    assert bucket_length(5, 8) == 16  # never below the 16 floor (no length-1 specialisation)
    assert bucket_length(50, "pow2", cap=60) == 60 and bucket_length(70, 16, cap=60) == 70  # cap, never below n
    assert bucket_length(13, None) == 13
    assert resolve_pad_to("auto", True) == 16 and resolve_pad_to("auto", False) is None
    assert resolve_pad_to("pow2", False) == "pow2" and resolve_pad_to(None, True) is None


@pytest.mark.parametrize("positional", list(POSITIONAL_SCHEMES))
def test_padding_to_buckets_changes_neither_loss_nor_gradients(positional):
    model = make_model(positional, n_encoder_layers=1, n_decoder_layers=1, memory_sink=positional == "rope").train()
    items, plain = _batch(), Collator(pad_id=0, bos_id=1)
    padded = PaddedCollator(plain, "pow2", model.max_seq_len)(items)
    assert padded.src.shape[1] == 16 and padded.tgt_in.shape[1] == 16
    assert padded.num_tgt_tokens == plain(items).num_tgt_tokens and padded.num_src_tokens == plain(items).num_src_tokens
    loss, grads = _loss_and_grads(model, plain(items))
    loss_padded, grads_padded = _loss_and_grads(model, padded)
    torch.testing.assert_close(loss_padded, loss, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_padded[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def _compiled_matches_eager(norm: str, positional: str, attention: str) -> None:
    model = _tiny(norm, positional, attention)
    batch = PaddedCollator(Collator(pad_id=0, bos_id=1), 16, model.max_seq_len)(_batch(seed=1))
    loss, grads = _loss_and_grads(model, batch)
    blocks, before = CompiledBlocks(model, backend="aot_eager"), compilations()
    with blocks.active():
        loss_c, grads_c = _loss_and_grads(model, batch)
    assert compilations() > before  # the blocks really ran compiled (not a silent eager fallback)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-5)
    assert grads_c.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("norm", "positional", "attention"), COVERING)
def test_compiled_blocks_give_eager_gradients_for_each_option(norm, positional, attention):
    _compiled_matches_eager(norm, positional, attention)


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "positional", "attention"), PRODUCT)
def test_compiled_blocks_give_eager_gradients_for_every_option_combination(norm, positional, attention):
    _compiled_matches_eager(norm, positional, attention)


def test_compiled_blocks_are_active_only_inside_training_steps():
    model = _tiny("rmsnorm", "rope", "mha")
    keys = list(model.state_dict())
    blocks = CompiledBlocks(model, backend="aot_eager")
    src, tgt = torch.randint(4, 90, (2, 16)), torch.randint(4, 90, (2, 16))
    before = compilations()
    with torch.no_grad():
        model.eval()(src, tgt)  # evaluation outside a step: the plain blocks
    assert compilations() == before and list(model.state_dict()) == keys
    with pytest.raises(ValueError), blocks.active():
        raise ValueError("a failing step")
    assert all(block._compiled_call_impl is None for block in blocks.blocks)  # uninstalled after an error too


def _varied_parts(tmp_path, max_tokens=None) -> TrainingParts:
    logger = MetricLogger()
    logger.start(tmp_path)
    return TrainingParts(
        model=make_model("rope", vocab_size=40, n_encoder_layers=1, n_decoder_layers=1),
        optimizer_factory=partial(torch.optim.AdamW, lr=1e-3),
        schedule=WarmupCosine(warmup=0.1),
        precision=Precision(),
        train_set=VariedLengths(400, seed=0),
        val_set=VariedLengths(16, seed=1),
        collator=Collator(pad_id=0, bos_id=1),
        logger=logger,
        run_dir=tmp_path,
        device=torch.device("cpu"),
        max_tokens_per_batch=max_tokens,
    )


def test_a_compiled_run_over_many_lengths_compiles_a_handful_of_graphs(tmp_path):
    parts = _varied_parts(tmp_path, max_tokens=256)  # batch sizes vary too
    trainer = Trainer(batch_size=8, max_steps=10, eval_every=10, eval_batches=1, log_every=4, peak_flops=1e12,
                      progress_bar=False, compile=True, compile_backend="aot_eager")  # fmt: skip
    before = compilations()
    trainer.fit(parts)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r["perf/compilations"] for r in rows if "perf/compilations" in r]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # one dynamic graph per block class (encoder, decoder), and one more each for a batch of one item
    assert 1 <= summary["perf/compilations"] == compilations() - before <= 4
    assert logged == sorted(logged) and logged[-1] == summary["perf/compilations"]


@pytest.mark.slow  # ~10 s / ~5 s of compiling: make test-all
def test_awkward_shapes_compile_one_graph_per_block_class_and_batch_of_one():
    """Length 1, batch 1, equal lengths, new lengths: each recompiled a whole-model graph (6 graphs for these
    7 batches, measured); bucketed padding and dynamic dims leave the batch of one as the only extra graph."""
    model, collate = _tiny("rmsnorm", "rope", "mha"), PaddedCollator(Collator(pad_id=0, bos_id=1), 16, 64)
    blocks, before, g = CompiledBlocks(model, backend="aot_eager"), compilations(), torch.Generator().manual_seed(0)
    for n, s, t in [(4, 9, 7), (4, 13, 21), (3, 30, 5), (1, 20, 20), (4, 6, 1), (2, 1, 3), (5, 33, 33)]:
        batch = collate([_pair(g, s, t) for _ in range(n)])
        with blocks.active():
            _loss_and_grads(model, batch)
    assert compilations() - before <= 4  # 2 block classes x (any batch, a batch of one)


def test_compile_settings_fail_in_one_line_naming_the_key():
    with pytest.raises(EnhancedTxError, match="trainer.compile_pad_to=0"):
        Trainer(compile_pad_to=0)
    with pytest.raises(EnhancedTxError, match="trainer.compile_backend=nope"):
        Trainer(compile=True, compile_backend="nope")
    Trainer(compile_backend="nope")  # not compiling: the backend is not used, so not checked


@pytest.mark.slow  # ~10 s / ~5 s of compiling: make test-all
def test_bench_compile_row_times_both_steps_and_reports_a_goal():
    from enhanced_tx.bench.compiled import compiled_table, measure_compiled
    from enhanced_tx.bench.goals import evaluate
    from enhanced_tx.bench.runner import Results
    from enhanced_tx.bench.shapes import Shape

    shape = Shape("t", d_model=32, n_heads=4, n_layers=1, ffn=64, vocab=100, batch=2, src_len=32, tgt_len=32)
    row = measure_compiled(shape, "fp32", 1, torch.device("cpu"), "auto", backend="aot_eager")
    assert row.eager_step_s > 0 and row.compiled_step_s > 0 and 1 <= row.compilations <= 4
    assert "eager / compiled" in compiled_table([row]).text()
    inductor = dataclasses.replace(row, backend="inductor")
    goals = {goal.name: value for goal, value in evaluate(Results(config={}, machine={}, compiled=[row, inductor]))}
    assert goals == {"compiled vs eager step, t fp32 (eager s / compiled s)": pytest.approx(row.ratio)}
    assert Results.from_dict(Results(config={}, machine={}, compiled=[row]).to_dict()).compiled == [row]
