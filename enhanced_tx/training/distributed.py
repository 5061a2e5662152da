"""How training is spread over processes: one class per strategy, one YAML file each (`conf/trainer/strategy/`).

A strategy owns everything that differs between one process and many: the process group (`setup`,
`barrier`, `teardown`), the model wrapper (`wrap`, `no_sync`), reductions (`all_reduce`, `clip_grad_norm`),
and how checkpoints are written and read (`save_checkpoint`, `load_weights`, `full_model`). The trainer
calls these hooks; with `SingleProcess` (what `auto` picks outside torchrun) every hook is the identity or
a no-op, so a single-process run does exactly what it did before strategies existed.

- `SingleProcess`: one process.
- `DDPStrategy`: DistributedDataParallel; rank 0 writes ordinary checkpoints (every rank holds all weights).
- `FSDPStrategy` (`enhanced_tx.training.fsdp`): FSDP2, sharded parameters and optimizer state; checkpoints
  through torch.distributed.checkpoint (see `enhanced_tx.checkpoint.sharded`).
- `auto_strategy`: DDP when torchrun started more than one process, else `SingleProcess`.

Rank, world size and local rank come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), so they
are known before the process group exists; without torchrun a DDP/FSDP strategy forms a group of one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from enhanced_tx.errors import ConfigError

T = TypeVar("T")


def launched_world_size(env: Mapping[str, str] | None = None) -> int:
    """How many processes the launcher (torchrun) started; 1 without one."""
    return int((os.environ if env is None else env).get("WORLD_SIZE", "1"))


class SingleProcess:
    """One process, one device: every hook is the identity (the default outside torchrun)."""

    def __init__(self) -> None:
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self.device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes the run folder."""
        return self.rank == 0

    # ------------------------------------------------------------------ life cycle
    def setup(self, device: torch.device) -> torch.device:
        """Join the process group (if any); returns the device this process trains on."""
        if launched_world_size() > 1:
            raise ConfigError(
                f"trainer.strategy=single, but torchrun started {launched_world_size()} processes; use "
                "trainer.strategy=ddp or fsdp (or auto), or launch one process"
            )
        self.device = device
        return device

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def teardown(self, clean: bool = True) -> None:
        """Leave the process group; `clean=False` after an error (no barrier: peers may be gone)."""

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 first, then on the others (which find what rank 0 wrote, e.g. a tokenizer)."""
        return fn()

    # ------------------------------------------------------------------ the model
    def wrap(self, model: nn.Module, precision: Any = None) -> nn.Module:
        """The module to call forward on (the caller keeps `model` for everything else)."""
        return model

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Inside: gradients accumulate locally; `last=True` marks the micro-batch that synchronises."""
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def full_model(self, model: nn.Module) -> Iterator[nn.Module]:
        """A plain module with all the weights, for generation and weights-only files (every rank enters)."""
        yield model

    # ------------------------------------------------------------------ reductions
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place; returns the tensor."""
        return tensor

    def clip_grad_norm(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm; returns it as a plain tensor."""
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def agreed_signal(self, signum: int | None) -> int | None:
        """A stop signal any rank caught (so every rank saves and stops after the same step), or None."""
        return signum

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self, manager, build_state: Callable[[], dict], model: nn.Module, optimizer, step: int, is_best: bool
    ) -> None:
        """Every rank calls this; here rank 0 writes the full state (model and optimizer included)."""
        if self.is_main:
            manager.save(build_state(), step, is_best=is_best)

    def load_weights(self, state: dict, path: os.PathLike | str, model: nn.Module, optimizer) -> None:
        """Model and optimizer tensors of a checkpoint, full (`.pt`) or sharded (DCP), at any world size."""
        from enhanced_tx.checkpoint import sharded as sharded_checkpoint

        if sharded_checkpoint.is_sharded(state):
            sharded_checkpoint.load(state, path, model, optimizer)
        else:
            self._load_full(state, model, optimizer)

    def _load_full(self, state: dict, model: nn.Module, optimizer) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])


class ProcessGroupStrategy(SingleProcess):
    """Base of the multi-process strategies: the process group and its collectives."""

    def __init__(self, backend: str | None = None, timeout_minutes: float = 30.0) -> None:
        super().__init__()
        self.backend = backend
        self.timeout = datetime.timedelta(minutes=timeout_minutes)
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = launched_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._owns_group = False

    def setup(self, device: torch.device) -> torch.device:
        if self.device is not None:  # idempotent: run composition and trainer may both ask
            return self.device
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise ConfigError(
                    f"LOCAL_RANK={self.local_rank} but this node has {torch.cuda.device_count()} GPUs; launch at "
                    "most one process per GPU (torchrun --nproc_per_node)"
                )
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        backend = self.backend or ("nccl" if device.type == "cuda" else "gloo")
        if not dist.is_initialized():
            options: dict[str, Any] = {"backend": backend, "timeout": self.timeout}
            if device.type == "cuda":
                options["device_id"] = device
            if "MASTER_ADDR" in os.environ:  # torchrun (or a launcher that sets the same variables)
                dist.init_process_group(**options)
            else:  # plain `python run_train.py trainer/strategy=ddp`: a group of one
                dist.init_process_group(**options, store=dist.HashStore(), rank=0, world_size=1)
            self._owns_group = True
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = device
        return device

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def teardown(self, clean: bool = True) -> None:
        if not (self._owns_group and dist.is_initialized()):
            return
        try:
            if clean:  # nobody leaves while a peer still talks to it (gloo aborts on a closed peer)
                dist.barrier()
            dist.destroy_process_group()
        except Exception as error:  # shutting down: a failing goodbye must not fail a finished run
            warnings.warn(f"process group teardown: {error}", stacklevel=2)
        self._owns_group = False
        self.device = None

    def main_first(self, fn: Callable[[], T]) -> T:
        # rank 0 first; then the first process of each other node (node-local caches); then everyone else
        if self.is_main:
            result = fn()
        self.barrier()
        if self.local_rank == 0 and not self.is_main:
            result = fn()
        self.barrier()
        if self.local_rank != 0:
            result = fn()
        return result

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor)
        return tensor

    def save_checkpoint(
        self, manager, build_state: Callable[[], dict], model: nn.Module, optimizer, step: int, is_best: bool
    ) -> None:
        super().save_checkpoint(manager, build_state, model, optimizer, step, is_best)
        self.barrier()  # nobody stops (and gets rank 0 killed by torchrun) before rank 0 has written

    def agreed_signal(self, signum: int | None) -> int | None:
        caught = torch.tensor([signum or 0], device=self.device)
        dist.all_reduce(caught, op=dist.ReduceOp.MAX)
        return int(caught.item()) or None


class DDPStrategy(ProcessGroupStrategy):
    """DistributedDataParallel: every rank holds the whole model; gradients are averaged in backward."""

    def __init__(
        self,
        backend: str | None = None,
        timeout_minutes: float = 30.0,
        find_unused_parameters: bool = False,
        bucket_cap_mb: float = 25.0,
    ) -> None:
        super().__init__(backend, timeout_minutes)
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = bucket_cap_mb
        self._ddp: nn.parallel.DistributedDataParallel | None = None

    def wrap(self, model: nn.Module, precision: Any = None) -> nn.Module:
        self._ddp = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device is not None and self.device.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters,
            bucket_cap_mb=self.bucket_cap_mb,
        )
        return self._ddp

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        if last or self._ddp is None:
            return contextlib.nullcontext()
        return self._ddp.no_sync()


def auto_strategy(**ddp_options: Any) -> SingleProcess:
    """`trainer.strategy=auto`: DDP (with these options) when torchrun started several processes."""
    return DDPStrategy(**ddp_options) if launched_world_size() > 1 else SingleProcess()


def rescale_position(
    batches_done: int, saved_world_size: int, saved_batch_size: int, world_size: int, batch_size: int
) -> int:
    """A rank's batches consumed in an epoch, saved at one world size and batch size, for a rank at another.

    Rank batch k is global batch `k * world_size + rank`, so `batches_done * saved_world_size` global batches
    were consumed; with the same per-rank batch size a rank at the new world size continues exactly after
    them. With another batch size the count goes through items (exact without length bucketing).
    """
    return batches_done * saved_world_size * saved_batch_size // (world_size * batch_size)
