"""Streamed Hugging Face splits as a resumable batch source (CONTRACTS.md, "Batch source").

The position is the `datasets` stream's own state (shard and example offset) at the start of the row the
next window begins in, plus the token offset in that row, the window count and the epoch: plain values that
go into the checkpoint. A run resumed from it reads the same windows, with the same objective noise (seeded
by (seed, epoch, window)), as a run that never stopped.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from enhanced_tx.data.collate import Batch
from enhanced_tx.data.encoding import text_encoder
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.hf_fields import get_field
from enhanced_tx.data.objectives import WindowTransform

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

Item = dict[str, torch.Tensor]
Position = dict[str, Any]


def encoded_rows(dataset: Any, tokenizer: PreTrainedTokenizerFast, fields: Mapping[str, str]) -> Iterator[dict]:
    """Rows as `{column: ids}`; targets and text rows end with EOS, sources do not (as in the map-style data)."""
    encode = text_encoder(tokenizer)
    for row in dataset:
        yield _encode_row(row, encode, fields, tokenizer.eos_token_id)


def _encode_row(row: Mapping, encode: Callable, fields: Mapping[str, str], eos: int) -> dict[str, list[int]]:
    return {
        column: encode([str(get_field(row, field))])[0] + ([] if column == "src" else [eos])
        for column, field in fields.items()
    }


class StreamItems:
    """Items of a streamed split, epoch after epoch, each with the position right after it."""

    def __init__(self, dataset: Any, tokenizer: PreTrainedTokenizerFast) -> None:
        self.dataset, self.tokenizer = dataset, tokenizer
        self._start = copy.deepcopy(dataset.state_dict())

    def items(self, position: Position | None) -> Iterator[tuple[Item, Position]]:
        raise NotImplementedError

    def _rows(self, state: dict) -> Iterator[tuple[Any, dict]]:
        """(row, stream state after it) from `state` on."""
        self.dataset.load_state_dict(state)
        for row in self.dataset:
            yield row, copy.deepcopy(self.dataset.state_dict())

    def batches(
        self, collator: Callable, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> StreamBatches:
        if world_size > 1:  # each rank reads its own shards (or every world_size-th row)
            from datasets.distributed import split_dataset_by_node

            self.dataset = split_dataset_by_node(self.dataset, rank=rank, world_size=world_size)
            self._start = copy.deepcopy(self.dataset.state_dict())
        return StreamBatches(self, collator, batch_size, device)


class PairRows(StreamItems):
    """One item per row: the source truncated to `max_src_len`, the target to `max_tgt_len` keeping EOS."""

    def __init__(
        self,
        dataset: Any,
        tokenizer: PreTrainedTokenizerFast,
        fields: Mapping[str, str],
        max_src_len: int,
        max_tgt_len: int,
    ):
        super().__init__(dataset, tokenizer)
        self.fields, self.max_src_len, self.max_tgt_len = dict(fields), max_src_len, max_tgt_len

    def items(self, position: Position | None) -> Iterator[tuple[Item, Position]]:
        encode, eos = text_encoder(self.tokenizer), self.tokenizer.eos_token_id
        epoch, state = (0, self._start) if position is None else (position["epoch"], position["stream"])
        while True:
            empty, from_start = True, position is None or epoch > position["epoch"]
            for row, after in self._rows(state):
                ids = _encode_row(row, encode, self.fields, eos)
                tgt = ids["tgt"] if len(ids["tgt"]) <= self.max_tgt_len else [*ids["tgt"][: self.max_tgt_len - 1], eos]
                item = {"src": torch.tensor(ids["src"][: self.max_src_len]), "tgt": torch.tensor(tgt)}
                empty = False
                yield item, {"epoch": epoch, "stream": after}
            _check_not_empty(from_start and empty)
            epoch, state = epoch + 1, self._start


class TextWindows(StreamItems):
    """The text field's tokens back to back (rows end with EOS), cut into objective windows every `stride`."""

    def __init__(
        self,
        dataset: Any,
        tokenizer: PreTrainedTokenizerFast,
        field: str,
        transform: WindowTransform,
        stride: int | None,
        seed: int,
    ):
        super().__init__(dataset, tokenizer)
        self.field, self.transform, self.seed = field, transform, seed
        self.stride = stride or transform.default_stride

    def items(self, position: Position | None) -> Iterator[tuple[Item, Position]]:
        encode, eos = text_encoder(self.tokenizer), self.tokenizer.eos_token_id
        p = position or {"epoch": 0, "stream": self._start, "offset": 0, "window": 0}
        epoch, state, offset, index = p["epoch"], p["stream"], p["offset"], p["window"]
        width, from_start = self.transform.window, position is None
        while True:
            made = False
            rows: deque[tuple[dict, np.ndarray]] = deque()  # (stream state at the row's start, its tokens)
            buffered = 0  # tokens in `rows`
            row_start = state
            for row, after in self._rows(state):
                tokens = np.asarray(encode([str(get_field(row, self.field))])[0] + [eos], dtype=np.int64)
                rows.append((row_start, tokens))
                buffered += len(tokens)
                row_start = after
                while rows and buffered - offset >= width:
                    window = _take(rows, offset, width)
                    item = self.transform(window, np.random.default_rng([self.seed, epoch, index]))
                    index, offset = index + 1, offset + self.stride
                    while rows and offset >= len(rows[0][1]):  # rows the next window starts after
                        offset -= len(rows[0][1])
                        buffered -= len(rows.popleft()[1])
                    start = rows[0][0] if rows else row_start
                    made = True
                    yield item, {"epoch": epoch, "stream": start, "offset": offset, "window": index}
            _check_not_empty(from_start and not made)
            epoch, state, offset, index, from_start = epoch + 1, self._start, 0, 0, True


def _take(rows: deque, offset: int, width: int) -> np.ndarray:
    """`width` tokens of the buffered rows from `offset` in the first one."""
    parts, need = [], offset + width
    for _, tokens in rows:
        parts.append(tokens[:need])
        need -= len(parts[-1])
        if need == 0:
            break
    return np.concatenate(parts)[offset:]


def _check_not_empty(empty: bool) -> None:
    if empty:
        raise DataError("the streamed split gave no item (empty, or fewer tokens than one window); use more data")


class StreamBatches:
    """The batch-source protocol over `StreamItems`: batches of `batch_size` items on `device`."""

    def __init__(self, items: StreamItems, collator: Callable, batch_size: int, device: torch.device) -> None:
        self.items, self.collator, self.batch_size, self.device = items, collator, batch_size, device
        self.position: Position | None = None  # after the last batch yielded; None: the start
        self.epoch = 0

    def __iter__(self) -> Iterator[Batch]:
        batch: list[Item] = []
        for item, position in self.items.items(self.position):
            batch.append(item)
            if len(batch) == self.batch_size:
                self.position, self.epoch = position, position["epoch"]
                yield self.collator(batch).to(self.device)
                batch = []

    def state_dict(self) -> dict:
        return {"stream": copy.deepcopy(self.position), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batch_size", self.batch_size) != self.batch_size:
            raise DataError(
                f"a streamed run resumes with its batch size ({state['batch_size']}), not trainer.batch_size="
                f"{self.batch_size}; keep the batch size or start a new run"
            )
        self.position = copy.deepcopy(state["stream"])
        self.epoch = 0 if self.position is None else self.position["epoch"]
