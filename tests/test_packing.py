"""Padding-free training (`trainer.pack_tokens`, enhanced_tx.model.packing): at the real positions the packed
path computes what the padded one does, for every model option, and the trainer's loss and gradients match."""

from __future__ import annotations

import pytest
import torch

from enhanced_tx.data.collate import IGNORE_INDEX, Batch, Collator
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.model import LayerNorm, SwiGLU
from enhanced_tx.model.blocks import PostNorm
from enhanced_tx.model.packing import Packing, causal_prefix
from enhanced_tx.training import Trainer
from enhanced_tx.training.distributed import SingleProcess
from enhanced_tx.training.evaluator import Evaluator
from enhanced_tx.training.precision import Precision
from enhanced_tx.training.step_loss import PACK_MIN_PADDING, batch_flops, micro_batch_loss, packed_positions
from tests.conftest import make_model


def _batch(seed: int = 0, b: int = 5, s: int = 11, t: int = 9, vocab: int = 97) -> Batch:
    """Random lengths (one row of each side full), pad token 0 after them, labels -100 there."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(1, s + 1, (b,), generator=g)
    tgt_len = torch.randint(1, t + 1, (b,), generator=g)
    src_len[0], tgt_len[1] = s, t
    src_mask = torch.arange(s)[None] < src_len[:, None]
    tgt_mask = torch.arange(t)[None] < tgt_len[:, None]
    src = torch.randint(4, vocab, (b, s), generator=g).masked_fill(~src_mask, 0)
    tgt_in = torch.randint(4, vocab, (b, t), generator=g).masked_fill(~tgt_mask, 0)
    labels = torch.randint(4, vocab, (b, t), generator=g).masked_fill(~tgt_mask, IGNORE_INDEX)
    return Batch(src=src, src_mask=src_mask, tgt_in=tgt_in, labels=labels)


def _outputs_and_grads(model, batch: Batch, packed: bool, hidden: bool = False):
    """Outputs at the real target positions (N, F), and the gradients of a weighted sum of them."""
    model.zero_grad(set_to_none=True)
    positions = causal_prefix(batch.labels)
    if packed:
        out = model(batch.src, batch.tgt_in, batch.src_mask, hidden=hidden, tgt_mask=positions)
    else:
        out = model(batch.src, batch.tgt_in, batch.src_mask, hidden=hidden)[positions]
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)  # every output matters, differently
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(model, batch: Batch, hidden: bool = False) -> None:
    out_padded, grads_padded = _outputs_and_grads(model, batch, packed=False, hidden=hidden)
    out_packed, grads_packed = _outputs_and_grads(model, batch, packed=True, hidden=hidden)
    assert out_packed.shape == out_padded.shape
    torch.testing.assert_close(out_packed, out_padded, rtol=1e-5, atol=1e-5)
    assert grads_packed.keys() == grads_padded.keys()
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("post_norm", [False, True], ids=["pre_norm", "post_norm"])
def test_packed_forward_and_gradients_match_the_padded_path_for_every_positional_scheme(positional, post_norm) -> None:
    residual = PostNorm() if post_norm else None
    model = make_model(positional, residual=residual, embed_norm=post_norm).train()
    _assert_same(model, _batch())


def test_packed_path_matches_for_every_attention_layout(attention) -> None:
    _assert_same(make_model("rope", attention=attention).train(), _batch(seed=1))


def test_packed_path_matches_with_swiglu_layernorm_memory_sink_and_checkpointing() -> None:
    model = make_model("learned", norm=LayerNorm, feedforward=SwiGLU, memory_sink=True).train()
    with torch.no_grad():  # a sink that takes part (zero at init: it would add nothing to the check)
        model.memory_sink.normal_()
    model.set_gradient_checkpointing(True)
    _assert_same(model, _batch(seed=2), hidden=True)


def test_ignored_labels_inside_a_row_stay_as_context_and_the_rest_of_the_row_is_dropped() -> None:
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6, IGNORE_INDEX], [7, IGNORE_INDEX, 8, IGNORE_INDEX, 9]])
    naive = torch.zeros_like(labels, dtype=torch.bool)
    for row in range(labels.shape[0]):
        last = max(i for i in range(labels.shape[1]) if labels[row, i] != IGNORE_INDEX)
        naive[row, : last + 1] = True
    assert torch.equal(causal_prefix(labels), naive)
    model = make_model("rope").train()  # a prompt the loss skips still conditions what comes after it
    batch = _batch(seed=3)
    batch.labels[:, :2] = IGNORE_INDEX
    _assert_same(model, batch)


def test_pack_and_unpack_round_trip_and_a_bad_mask_is_refused() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False]])
    x = torch.randn(2, 3, 4)
    packing = Packing(mask)
    assert packing.tokens == 3
    assert torch.equal(packing.pack(x), x[mask])
    assert torch.equal(packing.unpack(packing.pack(x)), x * mask[..., None])
    with pytest.raises(ValueError, match="bool"):
        Packing(mask.long())


@pytest.mark.parametrize("chunk_tokens", [None, 7], ids=["full_logits", "chunked"])
def test_the_training_loss_and_gradients_match_with_and_without_packing(chunk_tokens) -> None:
    model = make_model("rope").train()
    batch = _batch(seed=4)
    results = []
    for pack in (False, True):
        model.zero_grad(set_to_none=True)
        summed, z_share = micro_batch_loss(
            model, model, batch, label_smoothing=0.1, z_loss=1e-3, chunk_tokens=chunk_tokens, pack=pack
        )
        summed.backward()
        results.append((summed.detach(), z_share, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, z_a, grads_a), (loss_b, z_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z_b, z_a, rtol=1e-5, atol=1e-7)
    assert z_a > 0
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_packed_loss_is_within_bf16_rounding_of_the_padded_one() -> None:
    model = make_model("rope").train()
    batch = _batch(seed=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, _ = micro_batch_loss(model, model, batch, pack=False)
        packed, _ = micro_batch_loss(model, model, batch, pack=True)
    torch.testing.assert_close(packed, padded, rtol=1e-2, atol=0.0)


def test_auto_packs_only_batches_with_enough_padding_and_only_our_model() -> None:
    model = make_model("rope")
    full = _batch(seed=6, b=3)
    full.src_mask[:] = True
    full.labels[full.labels == IGNORE_INDEX] = 5
    assert packed_positions(model, full, "auto") is None
    assert packed_positions(model, full, True) is not None  # true packs whatever the padding
    padded = _batch(seed=6, b=8)
    real = padded.src_mask.sum() + causal_prefix(padded.labels).sum()
    assert 1 - real / (padded.src_mask.numel() + padded.labels.numel()) >= PACK_MIN_PADDING
    assert torch.equal(packed_positions(model, padded, "auto"), causal_prefix(padded.labels))
    assert packed_positions(model, padded, False) is None
    assert packed_positions(torch.nn.Linear(2, 2), padded, True) is None  # no padding-free path there


def test_bad_pack_tokens_settings_fail_in_one_line() -> None:
    with pytest.raises(EnhancedTxError, match=r"trainer.pack_tokens=sometimes must be true, false or auto"):
        Trainer(pack_tokens="sometimes")
    with pytest.raises(EnhancedTxError, match=r"pack_tokens=true needs trainer.compile=false"):
        Trainer(pack_tokens=True, compile=True)
    assert Trainer(pack_tokens="auto", compile=True).pack_tokens is False  # compiled steps keep their shapes


def test_counted_flops_follow_the_path_a_batch_takes() -> None:
    """MFU counts what runs: padded shapes on the padded path, the real tokens on the padding-free one."""
    model = make_model("rope")
    batch = _batch(seed=7, b=6)
    padded = batch_flops(model, batch, False)
    assert padded == 6 * model.forward_flops(batch.src.shape[1], batch.tgt_in.shape[1])
    src_real, tgt_real = int(batch.src_mask.sum()), int(causal_prefix(batch.labels).sum())
    assert batch_flops(model, batch, True) == pytest.approx(6 * model.forward_flops(src_real / 6, tgt_real / 6))
    assert batch_flops(model, batch, True) < 0.9 * padded
    batch.src_mask[:] = True
    batch.labels[batch.labels == IGNORE_INDEX] = 5
    assert batch_flops(model, batch, True) == pytest.approx(padded)  # nothing to skip


def test_validation_follows_the_trainers_setting_and_gives_the_same_loss() -> None:
    """pack_tokens=false keeps validation on the padded path too; auto packs it, for the same val/loss."""
    g = torch.Generator().manual_seed(8)
    items = [
        {"src": torch.randint(4, 97, (int(n),), generator=g), "tgt": torch.randint(4, 97, (int(m),), generator=g)}
        for n, m in torch.randint(1, 12, (10, 2), generator=g)
    ]
    model = make_model("rope")
    calls: list[bool] = []
    forward = model.forward
    model.forward = lambda *args, **kwargs: calls.append("tgt_mask" in kwargs) or forward(*args, **kwargs)
    losses = {}
    for pack in (False, "auto"):
        calls.clear()
        evaluator = Evaluator(items, Collator(0, 1), batch_size=5, max_batches=None, precision=Precision(),
                              device=torch.device("cpu"), strategy=SingleProcess(), pack_tokens=pack)  # fmt: skip
        losses[pack] = evaluator.validation_loss(model)
        assert calls == [pack == "auto"] * 2, pack
    assert losses["auto"] == pytest.approx(losses[False], rel=1e-6)
