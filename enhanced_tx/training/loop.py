"""What `Trainer.fit` works on (`LiveRun`), how it is built and restored from a checkpoint, and what a
checkpoint stores: the state dicts of the run's stateful parts (torchtitan-style), plus the run's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from enhanced_tx.checkpoint import CheckpointManager, save_model_weights_only
from enhanced_tx.checkpoint.atomic import atomic_link
from enhanced_tx.checkpoint.lean import is_weights_checkpoint
from enhanced_tx.checkpoint.pointer import target_of
from enhanced_tx.checkpoint.policy import retention
from enhanced_tx.checkpoint.rng import capture_rng_state, restore_rng_state
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.runtime.peak import measure_matmul_peak
from enhanced_tx.tracking.protocol import Logger, SilentLogger
from enhanced_tx.training.batches import BatchSource, MapStyleBatches
from enhanced_tx.training.budget import Budget, resumed_budget
from enhanced_tx.training.callbacks.base import Callback, LoopContext
from enhanced_tx.training.compiling import CompiledBlocks, PaddedCollator, resolve_pad_to
from enhanced_tx.training.evaluator import Evaluator
from enhanced_tx.training.metrics import ThroughputWindow
from enhanced_tx.training.optim import build_optimizer
from enhanced_tx.training.parts import TrainingParts
from enhanced_tx.training.resume import ResumePoint, ResumeSpec, RunRefused, find_resume_point, holds_optimizer
from enhanced_tx.training.state import TrainingState

if TYPE_CHECKING:
    from enhanced_tx.training.trainer import Trainer


@dataclass
class LiveRun:
    """The live objects of one `fit`."""

    parts: TrainingParts
    model: nn.Module  # the plain model (sharded in place under FSDP)
    forward: Any  # what the step calls: the DDP wrapper (its blocks compiled inside `compiled.active()`)
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    scaler: Any
    source: BatchSource
    state: TrainingState
    budget: Budget
    manager: CheckpointManager
    evaluator: Evaluator
    window: ThroughputWindow
    callbacks: list[Callback]
    ctx: LoopContext
    logger: Logger
    compiled: CompiledBlocks  # trainer.compile: the compiled blocks, installed for training steps only
    targets_per_step: float | None  # trainer.loss_denominator=epoch_mean: what a step's summed loss is divided by

    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def shown(self) -> set[str]:
        """Metrics the console line shows besides the loss: what callbacks add (BLEU, chrF, the EMA's loss)."""
        return set(self.ctx.extra.get("shown", ()))


def build_run(trainer: Trainer, parts: TrainingParts) -> LiveRun:
    """Model on its device and wrapped, optimizer, batch source, state; restored when the run resumes."""
    point = _resume_point(trainer, parts)
    if trainer.init_from and point is None:  # weights only: no optimizer, schedule or step
        from enhanced_tx.training.warm_start import warm_start

        source = warm_start(parts.model, trainer.init_from)
        trainer._print(f"warm start: weights from {source} (fresh optimizer, schedule and step counter)")
    model, device, strategy = parts.model.to(parts.device), parts.device, trainer.strategy
    # precision=auto becomes fp32 or bf16 here (measured, cached per machine); a resume keeps its run's choice
    recorded = point.state.get("precision") if point is not None and point.state is not None else None
    parts.precision = parts.precision.resolve(model, device, recorded, say=trainer._print)
    parts.precision.check_device(device)
    if trainer.keep_freed_memory and device.type == "cpu":
        from enhanced_tx.training.allocator import keep_freed_memory

        keep_freed_memory()  # no page faults on reused activations: 1.05-1.34x faster CPU steps
    model.set_gradient_checkpointing(trainer.gradient_checkpointing)
    wrapped = strategy.wrap(model, parts.precision)  # DDP wrapper, or `model` sharded in place (FSDP)
    optimizer = build_optimizer(parts.optimizer_factory, model)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before a restore sets the scheduled ones
    scaler = parts.precision.grad_scaler(device)
    pad_to = resolve_pad_to(trainer.compile_pad_to, trainer.compile)
    max_len = getattr(model, "max_seq_len", None)  # buckets never pass the position tables
    collator = parts.collator if pad_to is None else PaddedCollator(parts.collator, pad_to, max_len)
    batches = parts.batches or MapStyleBatches(
        parts.train_set,
        collator,
        trainer.batch_size,
        device=device,
        seed=parts.seed,
        bucketing=trainer.length_bucketing,
        bucket_pool=trainer.bucket_pool_batches,
        max_tokens=parts.max_tokens_per_batch,
        rank=strategy.rank,
        world_size=strategy.world_size,
    )
    state, budget, callbacks = TrainingState(), trainer.budget(batches), list(parts.callbacks)
    if point is not None:
        budget = _restore(trainer, point, model, optimizer, scaler, state, batches, callbacks, budget)
    logger = parts.logger if strategy.is_main and parts.logger is not None else SilentLogger()
    logger.summary({"precision": parts.precision.name})  # the resolved one (precision=auto: fp32 or bf16)
    evaluator = Evaluator(parts.val_set, parts.collator, batch_size=trainer.batch_size,
                          max_batches=trainer.eval_batches, precision=parts.precision, device=device,
                          strategy=strategy, max_tokens=parts.max_tokens_per_batch,
                          pack_tokens=trainer.pack_tokens)  # fmt: skip
    ctx = LoopContext(model, state, logger, strategy, evaluator, parts.precision, device, RunFolder(parts.run_dir),
                      monitor_name=trainer.monitor.name)  # fmt: skip
    peak = trainer.peak_flops or measure_matmul_peak(device, parts.precision.dtype)
    return LiveRun(
        parts=parts,
        model=model,
        forward=wrapped,
        optimizer=optimizer,
        base_lrs=base_lrs,
        scaler=scaler,
        source=batches,
        state=state,
        budget=budget,
        manager=_checkpoint_manager(trainer, parts),
        evaluator=evaluator,
        window=ThroughputWindow(peak, strategy.world_size),
        callbacks=callbacks,
        ctx=ctx,
        logger=logger,
        compiled=CompiledBlocks(model, trainer.compile_backend, enabled=trainer.compile),
        targets_per_step=_targets_per_step(trainer, batches),
    )


def checkpoint_state(trainer: Trainer, run: LiveRun) -> dict:
    """Everything an exact resume needs: each stateful part's state dict, and what defines the run."""
    return {
        "model": run.model.state_dict(),
        "optimizer": None if run.manager.weights_only else run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "train_state": run.state.state_dict(),
        "data": run.source.state_dict(),
        "callbacks": {callback.name: callback.state_dict() for callback in run.callbacks},
        "rng": capture_rng_state(),
        "budget": run.budget.as_dict(),
        "limits": trainer.limits(),
        "step": run.state.step,
        "precision": run.parts.precision.name,  # resolved (precision=auto): a resume uses the same one
        "config": run.parts.config,
        "logger_run_id": run.logger.run_id,
    }


def _targets_per_step(trainer: Trainer, batches: BatchSource) -> float | None:
    """A rank's mean target tokens per optimizer step over the epoch (loss_denominator=epoch_mean), or None:
    each step's own count (loss_denominator=step, or a source that cannot tell, e.g. a stream)."""
    mean = getattr(batches, "mean_targets_per_batch", None)
    per_batch = mean() if trainer.loss_denominator == "epoch_mean" and mean is not None else None
    return None if per_batch is None else per_batch * trainer.accumulation


def _checkpoint_manager(trainer: Trainer, parts: TrainingParts) -> CheckpointManager:
    """The retention policy (checkpoint.policy): weights only in a multirun job by default, else full."""
    policy = retention(trainer.checkpoint, trainer.keep_last, trainer.save_optimizer)
    # FSDP's optimizer state lives in its DCP shards, written by every rank: it keeps full checkpoints
    weights_only = policy.weights_only and not getattr(trainer.strategy, "shards_checkpoints", False)
    return CheckpointManager(RunFolder(parts.run_dir).checkpoints_dir, policy.keep_last, weights_only)


def save_final_weights(trainer: Trainer, run: LiveRun) -> None:
    weights = RunFolder(run.parts.run_dir).weights
    last = target_of(run.manager.last) if run.manager.weights_only and not trainer.save_half_precision else None
    # the last weights-only state is this very model in model.safetensors' layout: a second name, no copy
    if trainer.is_main and last == run.manager.step_path(run.state.step) and is_weights_checkpoint(last):
        atomic_link(last, weights)
        return
    with trainer.strategy.full_model(run.model) as full:  # FSDP: gathered from the shards (every rank takes part)
        if trainer.is_main:
            save_model_weights_only(full, weights, half_precision=trainer.save_half_precision)


def _resume_point(trainer: Trainer, parts: TrainingParts) -> ResumePoint | None:
    """The checkpoint to resume from (None: a fresh start): the one the composition root read, else looked up."""
    if not ResumeSpec.parse(trainer.resume).resumes:
        return None
    return parts.resume_from or find_resume_point(trainer.resume, parts.run_dir)


def _restore(trainer, point, model, optimizer, scaler, state, batches, callbacks, budget) -> Budget:
    path, saved = point.path, point.take_state()
    if not holds_optimizer(saved):
        raise RunRefused(
            f"cannot resume from {path}: it holds weights only (trainer.checkpoint=weights, the default of "
            f"multirun jobs, or save_optimizer=false); start a new run from them with trainer.init_from={path}"
        )
    _check_weight_shapes(saved, path, model)
    trainer.strategy.load_weights(saved, path, model, optimizer)  # full or sharded, any world size
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    restore_rng_state(saved["rng"])
    budget, warning = resumed_budget(budget, saved.get("budget"), saved.get("limits"), trainer.limits())
    if warning:
        trainer._print(warning)
    trainer._print(f"resumed from {path} at step {saved['train_state']['step']}")
    state.load_state_dict(saved["train_state"])
    # the data position; checkpoints before batch sources kept it in the train state
    legacy = {**saved["train_state"], "world_size": saved.get("world_size", 1), "batch_size": saved.get("batch_size")}
    data = saved.get("data") or {k: v for k, v in legacy.items() if v is not None}
    batches.load_state_dict(data)
    stored = saved.get("callbacks") or {}
    for callback in callbacks:
        if callback.name in stored:
            callback.load_state_dict(stored[callback.name])
    return budget


def _check_weight_shapes(state: dict, path, model: nn.Module) -> None:
    """A full checkpoint from another architecture is a one-line CheckpointError, not a size-mismatch
    traceback (sharded checkpoints are checked by torch.distributed.checkpoint)."""
    from enhanced_tx.checkpoint import check_shapes
    from enhanced_tx.checkpoint import sharded as sharded_checkpoint

    if sharded_checkpoint.is_sharded(state) or not isinstance(state.get("model"), dict):
        return
    check_shapes(path, {k: list(v.shape) for k, v in state["model"].items()}, model.state_dict())
