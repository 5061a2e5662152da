"""The training loss: cross-entropy over the real vocabulary (padded rows masked) and the optional z-loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from enhanced_tx.data.collate import IGNORE_INDEX
from enhanced_tx.training.loss import token_loss_sum

VOCAB, PADDED = 50, 64


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, PADDED, generator=generator) * 3
    logits[..., VOCAB:] += 5.0  # padded rows that would take much of the softmax if not masked
    labels = torch.randint(0, VOCAB, (3, 7), generator=generator)
    labels[0, 4:] = IGNORE_INDEX
    labels[2, 1:] = IGNORE_INDEX
    return logits.requires_grad_(), labels


def test_the_softmax_excludes_the_padded_vocabulary_rows():
    logits, labels = _batch()
    ours = token_loss_sum(logits, labels, vocab_size=VOCAB)
    expected = F.cross_entropy(logits[..., :VOCAB].flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(ours, expected)
    unmasked = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    assert ours < unmasked - 1.0  # the padded rows are gone from the normaliser
    ours.backward()
    assert torch.count_nonzero(logits.grad[..., VOCAB:]) == 0  # no gradient pushes padded rows around


def test_z_loss_adds_the_squared_log_partition_of_every_target_position():
    logits, labels = _batch(1)
    coefficient = 1e-2
    ours = token_loss_sum(logits, labels, vocab_size=VOCAB, z_loss=coefficient)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    real = logits[..., :VOCAB]
    kept = labels != IGNORE_INDEX
    log_z = torch.stack([torch.log(torch.exp(real[b, t]).sum()) for b, t in kept.nonzero().tolist()])
    ce = F.cross_entropy(real.flatten(0, 1), labels.flatten(), reduction="sum")
    expected = ce + coefficient * (log_z**2).sum()
    (grad_expected,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, ce)  # the term is really there
    torch.testing.assert_close(token_loss_sum(logits, labels, vocab_size=VOCAB, z_loss=0.0), ce)


def test_label_smoothing_and_z_loss_combine():
    logits, labels = _batch(2)
    both = token_loss_sum(logits, labels, vocab_size=VOCAB, label_smoothing=0.1, z_loss=1e-3)
    smoothed = F.cross_entropy(
        logits[..., :VOCAB].flatten(0, 1), labels.flatten(), reduction="sum", label_smoothing=0.1
    )
    z = token_loss_sum(logits, labels, vocab_size=VOCAB, z_loss=1e-3) - token_loss_sum(logits, labels, vocab_size=VOCAB)
    torch.testing.assert_close(both, smoothed + z, rtol=1e-5, atol=1e-4)
