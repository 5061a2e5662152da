"""`Evaluator`: the validation loss of a model, the same loss function as training (plain cross-entropy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.training.batches import Collator, dataset_lengths
from enhanced_tx.training.loss import token_loss_sum
from enhanced_tx.training.precision import Precision
from enhanced_tx.training.step_loss import padding_free_inputs
from enhanced_tx.training.strategy import Strategy


@dataclass
class LossTotals:
    loss_sum: float  # summed cross-entropy over the target tokens (all ranks)
    targets: int
    tokens: int  # non-padding source + target tokens

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)


class Evaluator:
    """Mean cross-entropy per target token over up to `max_batches` batches (None: all) in a fixed order."""

    def __init__(
        self,
        val_set: Any,
        collator: Collator,
        *,
        batch_size: int,
        max_batches: int | None,
        precision: Precision,
        device: torch.device,
        strategy: Strategy,
        max_tokens: int | None = None,  # the training token budget bounds validation batches too
        pack_tokens: bool | str = "auto",  # trainer.pack_tokens: padding-free batches (training/step_loss.py)
    ) -> None:
        self.val_set, self.collator = val_set, collator
        self.batch_size, self.max_batches, self.max_tokens = batch_size, max_batches, max_tokens
        self.precision, self.device, self.strategy = precision, device, strategy
        self.pack_tokens = pack_tokens

    def validation_loss(self, model: nn.Module) -> float:
        return self.totals(model).loss

    @torch.no_grad()
    def totals(self, model: nn.Module, progress: Any = None) -> LossTotals:
        """Summed loss, target and token counts; `progress(batches)` is called after each batch if given."""
        model.eval()
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss, targets, tokens
        for i, indices in enumerate(self._sampler()):
            if self.max_batches is not None and i >= self.max_batches:
                break
            batch = self.collator([self.val_set[j] for j in indices]).to(self.device)
            labels, packing = padding_free_inputs(model, batch, self.pack_tokens)  # as training computes
            with self.precision.autocast(self.device):
                logits = model(batch.src, batch.tgt_in, batch.src_mask, **packing)
            # over the real vocabulary, as in training (a wrapped model without `vocab_size`: all logits)
            summed = token_loss_sum(logits, labels, vocab_size=getattr(model, "vocab_size", None))
            sums += torch.stack([summed.double(), batch.num_tgt_tokens.double(),
                                 batch.num_tokens.double()])  # fmt: skip
            if progress is not None:
                progress(1)
        loss_sum, targets, tokens = self.strategy.all_reduce(sums).tolist()
        return LossTotals(loss_sum, int(targets), int(tokens))

    def _sampler(self) -> EpochBatchSampler:
        return EpochBatchSampler(
            len(self.val_set) if self.max_tokens is None else dataset_lengths(self.val_set),
            self.batch_size,
            shuffle=False,
            bucket_size_multiplier=0,  # in order: the first batches are not the shortest items
            max_tokens=self.max_tokens,
            rank=self.strategy.rank,
            world_size=self.strategy.world_size,
        )
