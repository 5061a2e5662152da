"""Resumable, shardable batch order: a pure function of (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; the epoch's order depends only on `(seed, epoch)`.

    - Resume: `start_batch=k` skips this rank's first k batches without touching the data, so the
      batches it yields equal the tail of the uninterrupted epoch.
    - Length bucketing (when lengths are given and `bucket_size_multiplier` > 0): the shuffled indices
      are cut into chunks of `batch_size * bucket_size_multiplier`, each chunk is sorted by length and
      cut into batches, then the batch order is shuffled. Similar lengths share a batch: less padding.
      With `bucket_size_multiplier=0` and a `max_tokens` budget, items are packed in their order.
    - `max_tokens` (needs lengths): batches hold as many items as fit the padded size `items x (longest
      source + longest target) <= max_tokens`, at most `batch_size`. Lengths are one number per item, or
      an [N, 2] array of (source, target) lengths: source and target are padded separately, so a batch's
      size is the sum of the two maxima, not the longest sum.
    - Sharding: the global batch list is the same for every world size; rank r takes batches
      r, r + world_size, ... Every rank gets the same number of batches: the tail is padded with
      batches from the start of the epoch (or dropped with `drop_last`). A rank's batch k is global
      batch `k * world_size + rank`, so a resume at another world size starts at
      `start_batch = consumed_global_batches // world_size`.
    - `len()` is the number of batches left to yield (after `start_batch`); `batches_per_epoch` the total.
    """

    def __init__(
        self,
        lengths_or_n: int | Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        bucket_size_multiplier: int = 200,
        max_tokens: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(lengths_or_n, (int, np.integer)):
            self.n, self.lengths = int(lengths_or_n), None
        else:
            parts = np.asarray(lengths_or_n, dtype=np.int64)
            self.length_parts = parts.reshape(len(parts), -1)  # (N, 1) or (N, 2): padded separately
            self.lengths = self.length_parts.sum(1)  # (N,) total tokens of each item
            self.sort_key = bucket_sort_key(self.length_parts)
            self.n = len(self.lengths)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if max_tokens is not None and (self.lengths is None or max_tokens < 1):
            raise ValueError("max_tokens needs per-item lengths (pass dataset.lengths) and a positive budget")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.bucket_size_multiplier = bucket_size_multiplier
        self.max_tokens = max_tokens
        self.rank = rank
        self.world_size = world_size
        self._cache: tuple[int, list[list[int]]] | None = None
        self.set_epoch(epoch, start_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate (and where in it to start, for a resume)."""
        if start_batch < 0:
            raise ValueError(f"start_batch={start_batch} must be >= 0")
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of the epoch for all ranks, in order (independent of rank and world size)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        bucketed = self.lengths is not None and (self.bucket_size_multiplier > 0 or self.max_tokens)
        if not bucketed:
            batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        else:
            if self.bucket_size_multiplier > 0:
                chunk = self.batch_size * self.bucket_size_multiplier
                batches = []
                for start in range(0, self.n, chunk):
                    part = order[start : start + chunk]
                    part = part[np.argsort(self.sort_key[part], kind="stable")]
                    batches.extend(self._split(part))
            else:  # a token budget without bucketing: pack in order (validation)
                batches = self._split(order)
        if self.drop_last and self.max_tokens is None:
            batches = [b for b in batches if len(b) == self.batch_size]
        if bucketed and self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _split(self, sorted_part: np.ndarray) -> list[np.ndarray]:
        if self.max_tokens is None:
            return [sorted_part[i : i + self.batch_size] for i in range(0, len(sorted_part), self.batch_size)]
        return pack_by_tokens(sorted_part, self.length_parts, self.max_tokens, self.batch_size)

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of the epoch, from the start."""
        if self._cache is None or self._cache[0] != epoch:
            batches = self.global_batches(epoch)
            if self.world_size > 1 and len(batches) % self.world_size:
                if self.drop_last:
                    batches = batches[: len(batches) - len(batches) % self.world_size]
                else:  # wrap around so every rank takes the same number of steps (no DDP hang)
                    pad = self.world_size - len(batches) % self.world_size
                    batches = batches + [batches[i % len(batches)] for i in range(pad)]
            mine = [b.tolist() for b in batches[self.rank :: self.world_size]]
            self._cache = (epoch, mine)
        return self._cache[1]

    @property
    def batches_per_epoch(self) -> int:
        return len(self.rank_batches(self.epoch))

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches(self.epoch)[self.start_batch :]


def bucket_sort_key(length_parts: np.ndarray) -> np.ndarray:
    """(N,) keys that order items for bucketing, from [N, 1] lengths or [N, 2] (source, target) lengths.

    Each part is padded to its own longest, so two-part items sort by the longer part, then by which part
    it is, then by the shorter part: a batch then holds items alike in both parts. With pools of 200 batches the
    bench's log-normal pairs pad 7% (`make bench`, realdata section; 11% with the longer part then the total,
    pools of 50: docs/benchmarks.md).
    """
    if length_parts.shape[1] == 1:
        return length_parts[:, 0].astype(np.int64)
    longer, shorter = length_parts.max(1), length_parts.min(1)
    target_longer = (length_parts[:, 1] > length_parts[:, 0]).astype(np.int64)
    span = int(longer.max(initial=0)) + 1
    return (longer * 2 + target_longer) * span + shorter


def pack_by_tokens(indices: np.ndarray, length_parts: np.ndarray, max_tokens: int, max_items: int) -> list[np.ndarray]:
    """Cut `indices` (in their order) into batches whose padded size, items x the sum over parts of the longest
    part (source, target), stays within `max_tokens`, with at most `max_items` items. An item longer than
    the budget on its own gets a batch of its own."""
    batches, start = [], 0
    longest = np.zeros(length_parts.shape[1], dtype=np.int64)
    for i, index in enumerate(indices):
        grown = np.maximum(longest, length_parts[index])
        if i > start and ((i - start + 1) * int(grown.sum()) > max_tokens or i - start == max_items):
            batches.append(indices[start:i])
            start, grown = i, length_parts[index].copy()
        longest = grown
    if start < len(indices):
        batches.append(indices[start:])
    return batches
