"""FSDP2 (`torch.distributed.fsdp.fully_shard`): parameters, gradients and optimizer state sharded over ranks.

Each Transformer block is sharded on its own (its weights are gathered just before it runs and freed
after), then the model, which holds the tied embedding and the final norms. With a bf16/fp16 precision a
`MixedPrecisionPolicy` computes in that dtype and reduces gradients in fp32; the sharded weights stay fp32.
Checkpoints go through torch.distributed.checkpoint (`enhanced_tx.checkpoint.sharded`): every rank
writes its shard, and they load at any world size or in one process.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from enhanced_tx.checkpoint import sharded as sharded_checkpoint
from enhanced_tx.errors import ConfigError
from enhanced_tx.training.distributed import ProcessGroupStrategy


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded one by one: the items of every `nn.ModuleList` (the encoder and decoder blocks)."""
    return [block for module in model.modules() if isinstance(module, nn.ModuleList) for block in module]


class FSDPStrategy(ProcessGroupStrategy):
    """Fully sharded data parallel (FSDP2); gradients are averaged over ranks like DDP's."""

    shards_checkpoints = True  # optimizer state in DCP shards: full checkpoints whatever trainer.checkpoint says

    def __init__(
        self, backend: str | None = None, timeout_minutes: float = 30.0, reshard_after_forward: bool = True
    ) -> None:
        super().__init__(backend, timeout_minutes)
        self.reshard_after_forward = reshard_after_forward
        self._model: nn.Module | None = None
        self._plain: nn.Module | None = None  # an unsharded copy (CPU) that full_model fills

    def wrap(self, model: nn.Module, precision: Any = None) -> nn.Module:
        dtype = getattr(precision, "dtype", torch.float32)
        if precision is not None and precision.grad_scaler(self.device or torch.device("cpu")) is not None:
            raise ConfigError(
                f"precision={getattr(precision, 'name', dtype)} needs a GradScaler, which does not see FSDP's "
                "sharded gradients consistently; use precision=bf16 with trainer.strategy=fsdp"
            )
        self._plain = copy.deepcopy(model).to("cpu")  # before sharding: plain parameters and buffers
        policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        options = {"mp_policy": policy, "reshard_after_forward": self.reshard_after_forward}
        for block in shard_units(model):
            fully_shard(block, **options)
        fully_shard(model, **options)  # the same object, now an FSDPModule
        self._model = model
        return model

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        # FSDP reduce-scatters in backward, which the trainer runs after this context: set the flag for it
        if self._model is not None:
            self._model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def clip_grad_norm(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a replicated DTensor

    @contextlib.contextmanager
    def full_model(self, model: nn.Module) -> Iterator[nn.Module]:
        """Gathers the full fp32 weights into a plain copy on every rank, on the training device, for the
        duration (generation calls encode/decode_step, which a sharded model cannot run on its own)."""
        if self._plain is None or not isinstance(model, FSDPModule):
            yield model
            return
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        plain = self._plain.to(self.device)
        plain.load_state_dict(full)
        del full
        try:
            yield plain
        finally:
            self._plain = plain.to("cpu")

    def save_checkpoint(
        self, manager, build_state: Callable[[], dict], model: nn.Module, optimizer, step: int, is_best: bool
    ) -> None:
        """Every rank writes its shard (DCP); then rank 0 writes the small `.pt` that points to it."""
        name = sharded_checkpoint.save(manager.directory, step, model, optimizer)
        if self.is_main:
            state = sharded_checkpoint.reference(build_state(), name)
            manager.save(state, step, is_best=is_best)
            sharded_checkpoint.prune(manager)
        self.barrier()

    def _load_full(self, state: dict, model: nn.Module, optimizer) -> None:
        """A `.pt` from a single-process or DDP run: every rank reads it and keeps its shard."""
        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, state["model"], options=options)
        by_name = sharded_checkpoint.optimizer_state_by_name(state["optimizer"], model, optimizer)
        set_optimizer_state_dict(model, optimizer, by_name, options=options)
