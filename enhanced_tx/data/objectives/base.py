"""What every objective is: a rule that turns a window of token ids into an encoder/decoder item.

An objective is configured by `conf/objective/*.yaml` and bound to a tokenizer and the data's lengths with
`bind(...)`, which returns a `WindowTransform`: how many raw tokens a window holds and how one window
becomes `{"src", "tgt"}`. The randomness of an item comes only from the `np.random.Generator` it is handed,
which the datasets seed from (seed, window index): a resume needs no RNG state of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from enhanced_tx.data.errors import DataError

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

Item = dict[str, torch.Tensor]


class WindowTransform(Protocol):
    window: int  # raw tokens one window holds
    max_src_len: int  # longest encoder input it makes
    max_tgt_len: int  # longest decoder target it makes
    default_stride: int  # tokens between window starts when data.stride is null

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> Item: ...


class Objective:
    """Base of the `objective` group: no special tokens; subclasses implement `bind`."""

    def special_tokens(self) -> list[str]:
        """Tokens this objective needs in the vocabulary (added to the run's tokenizer and saved with it)."""
        return []

    def window_length(self, src_len: int, tgt_len: int) -> int:
        """Raw tokens one window holds (known before any tokenizer exists: the data checks lengths with it)."""
        raise NotImplementedError

    def bind(self, tokenizer: PreTrainedTokenizerFast, src_len: int, tgt_len: int, min_src_len: int) -> WindowTransform:
        raise NotImplementedError

    def dataset(
        self,
        tokens: np.ndarray,
        tokenizer: PreTrainedTokenizerFast,
        src_len: int,
        tgt_len: int,
        min_src_len: int,
        stride: int | None,
        seed: int,
    ) -> Dataset:
        """Map-style items over a token stream, windows every `stride` tokens (None: back to back)."""
        from enhanced_tx.data.objectives.windows import WindowDataset  # windows imports this module

        transform = self.bind(tokenizer, src_len, tgt_len, min_src_len)
        return WindowDataset(tokens, transform, stride or transform.default_stride, seed)


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of window `index`: a pure function of (seed, index)."""
    return np.random.default_rng([seed, index])


def long_tensor(ids: np.ndarray | list[int]) -> torch.Tensor:
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))


def token_ids(tokenizer: PreTrainedTokenizerFast, tokens: list[str], objective: str) -> list[int]:
    """Ids of `tokens`, which must be in the tokenizer (`add_objective_tokens` puts them there)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise DataError(
            f"objective={objective} needs the special token {missing[0]} in the tokenizer; build the tokenizer "
            "through the run (it adds them), or call enhanced_tx.data.add_objective_tokens(tokenizer, objective)"
        )
    return [vocab[t] for t in tokens]


def add_objective_tokens(tokenizer: PreTrainedTokenizerFast, objective: Objective | None) -> PreTrainedTokenizerFast:
    """Add the objective's special tokens (sentinels, mask) the tokenizer lacks; returns the tokenizer."""
    tokens = [] if objective is None else objective.special_tokens()
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split; saved in tokenizer.json
    return tokenizer
