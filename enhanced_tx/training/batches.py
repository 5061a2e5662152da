"""Batch sources: where the trainer's micro-batches come from (CONTRACTS.md, "Batch source").

A batch source yields collated `Batch`es endlessly (`iter(source)`) and saves and restores its position
(`state_dict()` of plain values, stored under "data" in the checkpoint; `load_state_dict`). `MapStyleBatches`
(a map-style dataset, shuffled per epoch by `EpochBatchSampler`) is the default; a streaming dataset is
another implementation of the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset

from enhanced_tx.data.collate import Batch
from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.training.distributed import rescale_position

Collator = Callable[[list[dict]], Batch]


@runtime_checkable
class BatchSource(Protocol):
    def __iter__(self) -> Iterator[Batch]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def epoch_sampler(
    dataset: Any,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start: int = 0,
    bucketing: bool = True,
    max_tokens: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    bucket_pool: int = 200,
) -> EpochBatchSampler:
    """This rank's batches of one epoch (length-bucketed when the dataset knows its lengths)."""
    lengths = getattr(dataset, "lengths", None) if bucketing else None
    if max_tokens is not None:  # token budget: needs lengths, implies bucketing
        lengths = dataset_lengths(dataset)
    return EpochBatchSampler(
        lengths if lengths is not None else len(dataset),
        batch_size,
        max_tokens=max_tokens,
        seed=seed,
        epoch=epoch,
        start_batch=start,
        rank=rank,
        world_size=world_size,
        bucket_size_multiplier=bucket_pool,
    )


def dataset_lengths(dataset: Any) -> Sequence:
    """Per-item (source, target) lengths for token-budget batches, or total lengths where that is all there is."""
    lengths = getattr(dataset, "length_parts", None)
    if lengths is None:
        lengths = getattr(dataset, "lengths", None)
    if lengths is None:
        raise EnhancedTxError(
            f"data.max_tokens_per_batch needs per-item lengths, which {type(dataset).__name__} does not "
            "provide; use data=pairs"
        )
    return lengths


class MapStyleBatches:
    """Micro-batches of a map-style dataset: epoch after epoch, each shuffled by (seed, epoch)."""

    def __init__(
        self,
        dataset: Dataset,
        collator: Collator,
        batch_size: int,
        *,
        device: torch.device,
        seed: int = 0,
        bucketing: bool = True,
        max_tokens: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        bucket_pool: int = 200,
    ) -> None:
        self.dataset, self.collator, self.device = dataset, collator, device
        self.bucket_pool = bucket_pool  # batches per length-sorted pool (see EpochBatchSampler)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.bucketing, self.max_tokens = bucketing, max_tokens
        self.epoch = 0
        self.batch_in_epoch = 0  # this rank's micro-batches consumed in the current epoch

    def sampler(self, epoch: int, start: int = 0) -> EpochBatchSampler:
        return epoch_sampler(
            self.dataset,
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            start=start,
            bucketing=self.bucketing,
            max_tokens=self.max_tokens,
            rank=self.rank,
            world_size=self.world_size,
            bucket_pool=self.bucket_pool,
        )

    def batches_per_epoch(self) -> int:
        return len(self.sampler(0))

    def mean_targets_per_batch(self) -> float | None:
        """Target tokens per micro-batch, averaged over an epoch's batches (the same on every rank and in every
        epoch: the epoch's items and number of batches do not change); None where the dataset does not know
        its target lengths (its items are then alike, e.g. fixed-length windows)."""
        parts = getattr(self.dataset, "length_parts", None)
        if parts is None:
            return None
        n_batches = len(self.sampler(0).global_batches(0))
        return float(np.asarray(parts)[:, 1].sum()) / max(n_batches, 1)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            for indices in self.sampler(self.epoch, self.batch_in_epoch):
                self.batch_in_epoch += 1
                yield self.collator([self.dataset[i] for i in indices]).to(self.device)
            self.epoch += 1
            self.batch_in_epoch = 0

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """The position, rescaled when the run resumes at another world size or batch size."""
        self.epoch = int(state["epoch"])
        saved = state.get("world_size", 1), state.get("batch_size", self.batch_size)
        self.batch_in_epoch = rescale_position(int(state["batch_in_epoch"]), *saved, self.world_size, self.batch_size)
