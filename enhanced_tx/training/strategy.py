"""`Strategy`: what the trainer asks of a distribution strategy (implementations: `distributed`, `fsdp`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

T = TypeVar("T")


@runtime_checkable
class Strategy(Protocol):
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...

    def setup(self, device: torch.device) -> torch.device: ...

    def teardown(self, clean: bool = True) -> None: ...

    def main_first(self, fn: Callable[[], T]) -> T: ...

    def wrap(self, model: nn.Module, precision: Any = None) -> nn.Module: ...

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager: ...

    def full_model(self, model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]: ...

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def clip_grad_norm(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor: ...

    def agreed_signal(self, signum: int | None) -> int | None: ...

    def save_checkpoint(
        self, manager: Any, build_state: Callable[[], dict], model: nn.Module, optimizer: Any, step: int, is_best: bool
    ) -> None: ...

    def load_weights(self, state: dict, path: os.PathLike | str, model: nn.Module, optimizer: Any) -> None: ...
