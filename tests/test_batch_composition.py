"""How batches are composed and weighed (trainer.bucket_pool_batches, trainer.loss_denominator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enhanced_tx.data import IGNORE_INDEX, Collator
from enhanced_tx.data.pairs import PairsDataset
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.training import Trainer
from enhanced_tx.training.batches import MapStyleBatches

from .conftest import make_model
from .test_eval_training import one_batch, step_parts


def pairs(n: int = 200, seed: int = 0) -> PairsDataset:
    rng = np.random.default_rng(seed)
    src = [rng.integers(4, 90, size=rng.integers(1, 30)).tolist() for _ in range(n)]
    tgt = [rng.integers(4, 90, size=rng.integers(1, 30)).tolist() for _ in range(n)]
    return PairsDataset(src, tgt, vocab_size=97)


def epoch(source: MapStyleBatches, n_batches: int) -> list:
    batches = iter(source)
    return [next(batches) for _ in range(n_batches)]


def padding(batches: list) -> float:
    real = sum(int(b.src_mask.sum()) + int((b.labels != IGNORE_INDEX).sum()) for b in batches)
    return 1 - real / sum(b.src.numel() + b.labels.numel() for b in batches)


def test_a_pool_of_one_batch_gives_random_batches_and_larger_pools_pad_less():
    data, collator = pairs(), Collator(pad_id=0, bos_id=1)
    make = lambda **kw: MapStyleBatches(data, collator, 10, device=torch.device("cpu"), **kw)  # noqa: E731
    members = lambda bs: sorted(sorted(b.src[:, 0].tolist()) for b in bs)  # noqa: E731
    unbucketed, pool_1 = epoch(make(bucketing=False), 20), epoch(make(bucket_pool=1), 20)
    assert members(unbucketed) == members(pool_1)  # the same items batch together; only the order differs
    fractions = [padding(epoch(make(bucket_pool=pool), 20)) for pool in (1, 4, 20)]
    assert fractions[0] > fractions[1] > fractions[2]


def test_mean_targets_per_batch_is_the_epochs_target_tokens_over_its_batches():
    data = pairs()
    source = MapStyleBatches(data, Collator(0, 1), 16, device=torch.device("cpu"))
    n = source.batches_per_epoch()
    counted = [int(b.num_tgt_tokens) for b in epoch(source, n)]
    assert source.mean_targets_per_batch() == pytest.approx(sum(counted) / n)
    assert len(set(counted)) > 1  # the batches differ, so the mean is not any one batch's count


def test_epoch_mean_divides_the_steps_summed_loss_by_the_given_count(tmp_path):
    """loss_denominator=epoch_mean: the gradient is that of sum(loss) / targets_per_step, so a batch with
    fewer targets than the mean moves the weights less than its own mean loss would."""
    batch = one_batch()
    grads = {}
    for name, per_step in (("own", None), ("given", 40.0)):
        model = make_model("rope", vocab_size=97)
        before = model.embed.weight.detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is minus the gradient
        Trainer(max_grad_norm=None, progress_bar=False)._optimizer_step(
            model, model, optimizer, None, step_parts(model, tmp_path), iter([batch]), per_step
        )
        grads[name] = before - model.embed.weight.detach()
    targets = int((batch.labels != IGNORE_INDEX).sum())
    torch.testing.assert_close(grads["given"], grads["own"] * targets / 40.0, rtol=1e-5, atol=1e-8)


def test_bad_batch_composition_settings_are_one_line():
    with pytest.raises(EnhancedTxError, match="loss_denominator=tokens must be one of epoch_mean, step"):
        Trainer(loss_denominator="tokens")
    with pytest.raises(EnhancedTxError, match="bucket_pool_batches=0 must be >= 1"):
        Trainer(bucket_pool_batches=0)
