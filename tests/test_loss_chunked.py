"""The chunked training loss (the tied head applied a chunk of rows at a time, recomputed in backward): the same
loss and gradients as the full logits, the padded vocabulary rows excluded, no (rows x vocabulary) tensor kept
after the forward; and the padded rows excluded from the validation loss too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.data import IGNORE_INDEX, collate
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.model.linear_choice import set_cache_dir
from enhanced_tx.training import Precision, Trainer
from enhanced_tx.training.chunked_loss import chunked_token_loss_sum
from enhanced_tx.training.distributed import SingleProcess
from enhanced_tx.training.evaluator import Evaluator
from enhanced_tx.training.loss import token_loss_sum
from enhanced_tx.training.step_loss import chunks_for, micro_batch_loss

from .conftest import make_model
from .test_eval_training import step_parts

VOCAB = 97  # the head has 128 rows, 31 of them padding


def _items(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "src": torch.randint(4, VOCAB, (n,), generator=generator),
            "tgt": torch.randint(4, VOCAB, (m,), generator=generator),
        }  # fmt: skip
        for n, m in [(5, 7), (3, 2), (6, 4)]  # ragged: the labels hold IGNORE_INDEX padding
    ]


def _batch(seed: int = 0):
    return collate(_items(seed), pad_id=0, bos_id=1)


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", ["default", "onednn"])
@pytest.mark.parametrize("smoothing, z", [(0.0, 0.0), (0.1, 0.0), (0.0, 1e-2), (0.2, 1e-2)])
@pytest.mark.parametrize("rows", [1, 5, 64])  # 5 does not divide the 3 x 7 rows; 64 is one chunk
def test_chunked_loss_and_gradients_equal_the_full_logits(backend, smoothing, z, rows):
    if backend == "onednn" and not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this build")
    model = make_model("rope", vocab_size=VOCAB, linear_backend=backend).train()
    batch = _batch()
    logits = model(batch.src, batch.tgt_in, batch.src_mask)
    full = token_loss_sum(logits, batch.labels, vocab_size=VOCAB, label_smoothing=smoothing, z_loss=z)
    expected = _grads(model, full)

    hidden = model(batch.src, batch.tgt_in, batch.src_mask, hidden=True)
    assert hidden.shape == (*batch.tgt_in.shape, model.d_model)
    chunked, z_share = chunked_token_loss_sum(hidden, model.embed.weight, batch.labels, vocab_size=VOCAB,
                                              chunk_rows=rows, backend=backend, label_smoothing=smoothing,
                                              z_loss=z)  # fmt: skip
    got = _grads(model, chunked)

    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    assert torch.count_nonzero(got["embed.weight"][VOCAB:]) == 0  # padded rows: no gradient from the head
    if z:
        real = logits.detach()[..., :VOCAB].flatten(0, 1)
        kept = batch.labels.flatten() != IGNORE_INDEX
        torch.testing.assert_close(z_share, z * torch.logsumexp(real[kept], -1).square().sum(), rtol=1e-5, atol=1e-6)
    else:
        assert float(z_share) == 0.0


def test_the_chunked_forward_keeps_no_rows_x_vocabulary_tensor():
    """What the forward + loss leave saved for backward: the full path holds (rows, vocabulary) tensors (the
    softmax), the chunked one none of any chunk, and fewer bytes in all."""
    model = make_model("rope", vocab_size=VOCAB, d_model=48).train()  # feed-forward 192 wide: no 128 but the head
    batch = _batch()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def saved(fn) -> tuple[int, set[int]]:
        storages: dict[int, int] = {}
        widths: set[int] = set()

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.untyped_storage().data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                widths.add(t.shape[-1] if t.dim() else 0)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(storages.values()), widths

    full_bytes, full_widths = saved(lambda: token_loss_sum(model(batch.src, batch.tgt_in, batch.src_mask),
                                                          batch.labels, vocab_size=VOCAB))  # fmt: skip
    chunked_bytes, chunked_widths = saved(lambda: chunked_token_loss_sum(
        model(batch.src, batch.tgt_in, batch.src_mask, hidden=True), model.embed.weight, batch.labels,
        vocab_size=VOCAB, chunk_rows=4))  # fmt: skip
    assert VOCAB in full_widths  # the reference really keeps the softmax of the real vocabulary
    assert VOCAB not in chunked_widths and model.padded_vocab_size not in chunked_widths
    assert chunked_bytes < full_bytes


def test_the_trainer_step_is_the_same_chunked_or_not(tmp_path):
    """trainer.loss_chunk_tokens chunks a micro-batch with more target rows; the step's loss, z-loss share and
    update equal the full-logits step's (label smoothing and z-loss on)."""
    batch = _batch(1)
    rows = batch.labels.numel()
    model = make_model("rope", vocab_size=VOCAB)
    assert chunks_for(model, rows, 4) == 4 and chunks_for(model, rows, rows) is None
    assert chunks_for(model, rows, None) is None
    results, states = {}, {}
    for chunk in (None, 4):
        model = make_model("rope", vocab_size=VOCAB)  # the same weights each time
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        trainer = Trainer(label_smoothing=0.1, z_loss=1e-2, loss_chunk_tokens=chunk, progress_bar=False)
        parts = step_parts(model, tmp_path)
        results[chunk] = trainer._optimizer_step(model, model, optimizer, None, parts, iter([batch]))
        states[chunk] = model.state_dict()
    full, chunked = results[None], results[4]
    assert chunked.loss_sum == pytest.approx(full.loss_sum, rel=1e-5)
    assert chunked.z_loss_sum == pytest.approx(full.z_loss_sum, rel=1e-5) and full.z_loss_sum > 0
    assert chunked.grad_norm == pytest.approx(full.grad_norm, rel=1e-5)
    for name, value in states[None].items():
        torch.testing.assert_close(states[4][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_chunked_loss_under_bf16_autocast_matches_the_full_logits():
    model = make_model("rope", vocab_size=VOCAB).train()
    batch = _batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = micro_batch_loss(model, model, batch, z_loss=1e-3)
        chunked, _ = micro_batch_loss(model, model, batch, z_loss=1e-3, chunk_tokens=5)
    assert full.dtype == chunked.dtype == torch.float32
    full_grads, chunked_grads = _grads(model, full), _grads(model, chunked)
    torch.testing.assert_close(chunked, full, rtol=1e-3, atol=1e-3)  # both from bf16 matmuls
    for name, grad in full_grads.items():  # bf16 rounding of per-chunk vs whole weight gradients: relative norm
        assert float((chunked_grads[name] - grad).norm()) <= 1e-2 * float(grad.norm()), name


def test_auto_backend_measuring_its_first_head_matmul_does_not_break_the_recomputation(tmp_path):
    """linear_backend=auto times the candidates on a weight shape's first matmul; done inside the checkpoint, the
    recomputation would save other tensors than the forward (CheckpointError). A fresh cache forces the timing."""
    model = make_model("rope", vocab_size=VOCAB, linear_backend="auto").train()
    batch = _batch()
    set_cache_dir(tmp_path)  # no remembered choices: the first (rows, 32) x (32, 97) matmul measures
    try:
        hidden = model(batch.src, batch.tgt_in, batch.src_mask, hidden=True)
        loss, _ = chunked_token_loss_sum(hidden, model.embed.weight, batch.labels, vocab_size=VOCAB, chunk_rows=4,
                                         backend="auto")  # fmt: skip
        loss.backward()
    finally:
        set_cache_dir(None)
    assert (tmp_path / "linear_backend.json").exists()  # it did measure
    assert torch.isfinite(model.embed.weight.grad).all()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_a_bad_loss_chunk_tokens_is_one_line_naming_the_key(bad):
    with pytest.raises(EnhancedTxError, match=r"trainer.loss_chunk_tokens=.* must be a positive whole number"):
        Trainer(loss_chunk_tokens=bad, progress_bar=False)


def test_the_validation_loss_excludes_the_padded_vocabulary_rows():
    """The Evaluator's loss is cross-entropy over the real vocabulary only, as in training."""
    model = make_model("rope", vocab_size=VOCAB)
    items = _items(3)
    evaluator = Evaluator(items, lambda xs: collate(xs, pad_id=0, bos_id=1), batch_size=8, max_batches=None,
                          precision=Precision(), device=torch.device("cpu"), strategy=SingleProcess())  # fmt: skip
    totals = evaluator.totals(model)
    batch = collate(items, pad_id=0, bos_id=1)
    with torch.no_grad():
        logits = model(batch.src, batch.tgt_in, batch.src_mask).flatten(0, 1)
    labels = batch.labels.flatten()
    real = F.cross_entropy(logits[:, :VOCAB], labels, ignore_index=IGNORE_INDEX, reduction="sum")
    padded = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    assert totals.targets == int((labels != IGNORE_INDEX).sum())
    assert totals.loss_sum == pytest.approx(float(real), rel=1e-6)
    assert abs(totals.loss_sum - float(padded)) > 1e-3 * abs(float(padded))  # masking changes the number
