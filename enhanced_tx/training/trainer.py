"""The training loop: reads like the algorithm; each concern (precision, budget, checkpoints, logging,
preemption) lives in its own module and is called from here."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from enhanced_tx.checkpoint import CheckpointManager, capture_rng_state, restore_rng_state
from enhanced_tx.data.collate import IGNORE_INDEX, Batch
from enhanced_tx.data.sampling import EpochBatchSampler
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.training.budget import Budget
from enhanced_tx.training.distributed import SingleProcess, rescale_position
from enhanced_tx.training.loss import token_loss_sum
from enhanced_tx.training.optim import OptimizerFactory, build_optimizer
from enhanced_tx.training.precision import Precision
from enhanced_tx.training.preemption import PreemptionGuard, TrainingInterrupted
from enhanced_tx.training.resume import ResumePoint, find_resume_point
from enhanced_tx.training.schedule import Schedule
from enhanced_tx.training.throughput import measure_matmul_peak


class TrainingDiverged(EnhancedTxError):
    """The loss stayed non-finite for too many steps in a row."""


@dataclass
class TrainState:
    """Everything besides model/optimizer tensors that an exact resume needs."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # this rank's micro-batches consumed in the current epoch
    tokens: int = 0  # non-padding source + target tokens seen (all ranks)
    flops: float = 0.0  # model FLOPs spent (all ranks)
    train_seconds: float = 0.0  # wall clock of training steps (evaluation excluded)
    best_val_loss: float = math.inf
    best_monitored: float | None = None  # best trainer.monitor value when it is not val/loss
    nonfinite_in_a_row: int = 0


@dataclass
class TrainingParts:
    """What `Trainer.fit` needs besides its own settings; built by `enhanced_tx.training.run`."""

    model: nn.Module
    optimizer_factory: OptimizerFactory
    schedule: Schedule
    precision: Precision
    train_set: Dataset
    val_set: Dataset
    collator: object
    logger: object
    run_dir: Path
    device: torch.device
    seed: int = 0
    config: dict = dataclasses.field(default_factory=dict)  # resolved config, stored in checkpoints
    sample_prompts: Sequence[torch.Tensor] = ()  # encoded prompts for greedy continuations at eval
    decode_tokens: object = None  # ids -> text, for the sample table
    special_ids: dict = dataclasses.field(default_factory=dict)  # bos_id, eos_id, pad_id
    val_references: Sequence[str] = ()  # untokenized targets of val_set, in order (pairs): for eval_generate
    max_tokens_per_batch: int | None = None  # token budget per micro-batch (data.max_tokens_per_batch)
    # the checkpoint trainer.resume names, already read by the run composition (read once); None: look it up
    resume_from: ResumePoint | None = None


class Trainer:
    """Trains an encoder-decoder with token-weighted cross-entropy; built by Hydra from `conf/trainer/`."""

    def __init__(
        self,
        batch_size: int = 32,
        max_steps: int | None = 1000,
        epochs: float | None = None,
        budget: dict | None = None,
        gradient_accumulation_steps: int = 1,
        max_grad_norm: float | None = 1.0,
        eval_every: int = 200,
        eval_batches: int = 20,
        log_every: int = 10,
        gradient_checkpointing: bool = False,
        length_bucketing: bool = True,
        compile: bool = False,
        keep_freed_memory: bool = True,
        resume: str | None = None,
        keep_last: int = 3,
        save_half_precision: bool = False,
        max_nonfinite_steps: int = 25,
        peak_flops: float | None = None,
        sample_max_new_tokens: int = 32,
        progress_bar: bool = True,
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        eval_generate: int = 0,
        eval_generate_max_new_tokens: int | None = None,
        monitor: str = "val/loss",
        strategy: SingleProcess | None = None,
    ) -> None:
        problems = [
            f"trainer.{k}={v} must be >= 1"
            for k, v in dict(
                batch_size=batch_size,
                gradient_accumulation_steps=gradient_accumulation_steps,
                eval_every=eval_every,
                log_every=log_every,
                eval_batches=eval_batches,
            ).items()
            if v < 1
        ]
        if epochs is not None and epochs <= 0:
            problems.append(f"trainer.epochs={epochs} must be positive")
        problems += _check_evaluation_settings(label_smoothing, eval_generate, monitor)
        if problems:
            raise EnhancedTxError("; ".join(problems))
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.epochs = epochs
        self.budget_config = dict(budget or {})
        self.accumulation = gradient_accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.eval_every = eval_every
        self.eval_batches = eval_batches
        self.log_every = log_every
        self.gradient_checkpointing = gradient_checkpointing
        self.length_bucketing = length_bucketing
        self.compile = compile
        self.keep_freed_memory = keep_freed_memory
        self.resume = resume
        self.keep_last = keep_last
        self.save_half_precision = save_half_precision
        self.max_nonfinite_steps = max_nonfinite_steps
        self.peak_flops = peak_flops
        self.sample_max_new_tokens = sample_max_new_tokens
        self.progress_bar = progress_bar
        self.label_smoothing = label_smoothing
        self.init_from = init_from
        self.eval_generate = eval_generate
        self.eval_generate_max_new_tokens = eval_generate_max_new_tokens
        self.monitor = monitor
        self.max_tokens_per_batch: int | None = None  # set from TrainingParts in fit
        self.strategy = strategy if strategy is not None else SingleProcess()  # conf/trainer/strategy/

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_main(self) -> bool:
        return self.strategy.is_main

    # ------------------------------------------------------------------ data
    def _lengths(self, dataset: Dataset):
        return getattr(dataset, "lengths", None) if self.length_bucketing else None

    def _sampler(self, dataset: Dataset, seed: int, epoch: int, start: int) -> EpochBatchSampler:
        lengths = self._lengths(dataset)
        if self.max_tokens_per_batch is not None:  # token budget: needs lengths, implies bucketing
            lengths = _dataset_lengths(dataset)
        return EpochBatchSampler(
            lengths if lengths is not None else len(dataset),
            self.batch_size,
            max_tokens=self.max_tokens_per_batch,
            seed=seed,
            epoch=epoch,
            start_batch=start,
            rank=self.rank,
            world_size=self.world_size,
        )

    def _micro_batches(self, parts: TrainingParts, state: TrainState) -> Iterator[Batch]:
        """Endless stream of micro-batches from (epoch, batch_in_epoch); updates the position as it goes."""
        while True:
            sampler = self._sampler(parts.train_set, parts.seed, state.epoch, state.batch_in_epoch)
            for indices in sampler:
                state.batch_in_epoch += 1
                yield parts.collator([parts.train_set[i] for i in indices]).to(parts.device)
            state.epoch += 1
            state.batch_in_epoch = 0

    def _limits(self) -> dict:
        """The configured limits (stored in checkpoints: a resume with other limits is a changed run)."""
        return {"max_steps": self.max_steps, "epochs": self.epochs, "budget": dict(self.budget_config)}

    def _budget(self, parts: TrainingParts) -> Budget:
        max_steps = self.max_steps
        if self.epochs is not None:
            per_epoch = len(self._sampler(parts.train_set, parts.seed, 0, 0))
            epoch_steps = math.ceil(self.epochs * per_epoch / self.accumulation)
            max_steps = epoch_steps if max_steps is None else min(max_steps, epoch_steps)
        return Budget(max_steps=max_steps, **self.budget_config)

    # ------------------------------------------------------------------ resume
    def _resume_point(self, parts: TrainingParts) -> ResumePoint | None:
        """The checkpoint to resume from (None: a fresh start): the one the run composition read, else looked up."""
        if not self.resume:
            return None
        return parts.resume_from or find_resume_point(self.resume, parts.run_dir)

    def _restore(self, parts: TrainingParts, point: ResumePoint | None, optimizer, scaler) -> tuple[TrainState, Budget]:
        if point is None:  # no resume, or resume=auto and nothing saved yet: a fresh start
            return TrainState(), self._budget(parts)
        path, state = point.path, point.take_state()
        _check_weight_shapes(state, path, parts.model)
        self.strategy.load_weights(state, path, parts.model, optimizer)  # full or sharded, any world size
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        budget = self._resumed_budget(parts, state)
        self.wandb_run_id = state.get("logger_run_id")
        self._print(f"resumed from {path} at step {state['train_state']['step']}")
        train_state = TrainState(**state["train_state"])
        saved = state.get("world_size", 1), state.get("batch_size", self.batch_size)  # another world size?
        train_state.batch_in_epoch = rescale_position(
            train_state.batch_in_epoch, *saved, self.world_size, self.batch_size
        )
        return train_state, budget

    def _resumed_budget(self, parts: TrainingParts, state: dict) -> Budget:
        """The schedule is laid out over the total the run started with (stored in the checkpoint), so a
        resumed run ends as the straight one. Other limits now (a longer run) win, with a warning: the LR
        schedule then spans the new total."""
        configured = self._budget(parts)
        if not state.get("budget"):
            return configured
        stored = Budget(**state["budget"])
        # the limits as configured: an epoch count gives another number of steps at another world size
        changed = state["limits"] != self._limits() if "limits" in state else stored != configured
        if not changed or stored == configured:
            return stored
        was, now = stored.as_dict(), configured.as_dict()
        steps = "trainer.max_steps" if self.epochs is None else "steps (trainer.epochs, trainer.max_steps)"
        totals = "; ".join(
            f"{steps if k == 'max_steps' else 'trainer.budget.' + k}: {_total(was[k])} -> {_total(now[k])}"
            for k in was
            if was[k] != now[k]
        )
        self._print(
            f"warning: resuming with other training limits than the checkpoint's ({totals}); training to the new "
            "total, and the LR schedule now spans it: the run is no longer identical to a straight run"
        )
        return configured

    def _checkpoint_state(self, parts, optimizer, scaler, state: TrainState, budget: Budget) -> dict:
        return {
            "model": parts.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "train_state": dataclasses.asdict(state),
            "step": state.step,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "rng": capture_rng_state(),
            "budget": budget.as_dict(),
            "limits": self._limits(),
            "config": parts.config,
            "logger_run_id": getattr(parts.logger, "run_id", None),
        }

    # ------------------------------------------------------------------ the loop
    def fit(self, parts: TrainingParts) -> float:
        """Train until the first limit; returns the best `monitor` value (val/loss: what a sweep minimises)."""
        self._configure_from_parts(parts)
        point = self._resume_point(parts)
        if self.init_from and point is None:  # weights only: no optimizer, schedule or step
            from enhanced_tx.training.warm_start import warm_start

            source = warm_start(parts.model, self.init_from)
            self._print(f"warm start: weights from {source} (fresh optimizer, schedule and step counter)")
        model, device = parts.model.to(parts.device), parts.device
        parts.precision.check_device(device)
        if self.keep_freed_memory and device.type == "cpu":
            from enhanced_tx.training.allocator import keep_freed_memory

            keep_freed_memory()  # no page faults on reused activations: 1.05-1.34x faster CPU steps
        model.set_gradient_checkpointing(self.gradient_checkpointing)
        wrapped = self.strategy.wrap(model, parts.precision)  # DDP wrapper, or `model` sharded in place (FSDP)
        optimizer = build_optimizer(parts.optimizer_factory, model)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        scaler = parts.precision.grad_scaler(device)
        manager = CheckpointManager(parts.run_dir / "checkpoints", keep_last=self.keep_last)
        state, budget = self._restore(parts, point, optimizer, scaler)
        forward = torch.compile(wrapped) if self.compile else wrapped
        peak = self.peak_flops or _measure_peak(device, parts.precision.dtype)

        batches = self._micro_batches(parts, state)
        bar = tqdm(
            total=budget.max_steps,
            initial=state.step,
            disable=not (self.progress_bar and self.is_main),
            desc="train",
            dynamic_ncols=True,
        )
        window = {"loss_sum": 0.0, "targets": 0, "tokens": 0, "seconds": 0.0, "flops": 0.0, "steps": 0}
        progress = budget.progress(state.step, state.tokens, state.flops, state.train_seconds)
        with PreemptionGuard() as guard:
            while progress < 1.0:
                model.train()
                lr_factor = parts.schedule(progress)
                for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base * lr_factor
                started = time.perf_counter()
                step_stats = self._optimizer_step(forward, model, optimizer, scaler, parts, batches)
                loss_sum, targets, tokens, grad_norm, flops = step_stats
                elapsed = time.perf_counter() - started

                state.step += 1
                state.tokens += tokens
                state.flops += flops
                state.train_seconds += elapsed
                if math.isfinite(loss_sum) and math.isfinite(grad_norm):
                    state.nonfinite_in_a_row = 0
                    window["loss_sum"] += loss_sum
                    window["targets"] += targets
                else:
                    state.nonfinite_in_a_row += 1
                    if state.nonfinite_in_a_row >= self.max_nonfinite_steps:
                        raise TrainingDiverged(
                            f"the loss was non-finite for {state.nonfinite_in_a_row} steps in a row (step "
                            f"{state.step}); lower optimizer.lr, raise trainer.max_grad_norm clipping, or use "
                            "precision=bf16/fp32"
                        )
                for key, value in (("tokens", tokens), ("seconds", elapsed), ("flops", flops), ("steps", 1)):
                    window[key] += value
                progress = budget.progress(state.step, state.tokens, state.flops, state.train_seconds)
                bar.update(1)

                if state.step % self.log_every == 0 or progress >= 1.0:
                    self._log_train(parts, bar, window, state, optimizer, grad_norm, peak)
                    window = dict.fromkeys(window, 0)
                    window["loss_sum"] = 0.0
                if state.step % self.eval_every == 0 or progress >= 1.0:
                    self._evaluate_and_save(parts, optimizer, scaler, state, budget, manager)
                signum = self.strategy.agreed_signal(guard.signum)  # all ranks stop after the same step
                if signum is not None:
                    if state.step % self.eval_every and progress < 1.0:  # not just saved above
                        self._save(parts, optimizer, scaler, state, budget, manager, is_best=False)
                    bar.close()
                    raise TrainingInterrupted(signum, state.step)
        bar.close()
        from enhanced_tx.checkpoint import save_model_weights_only

        with self.strategy.full_model(model) as full:  # FSDP: gathered from the shards (every rank takes part)
            if self.is_main:
                weights = parts.run_dir / "model.safetensors"
                save_model_weights_only(full, weights, half_precision=self.save_half_precision)
        return self.best_value(state)

    def _optimizer_step(self, forward, model, optimizer, scaler, parts, batches) -> tuple:
        """One update over `accumulation` micro-batches; the loss is the mean over all their target tokens.

        Returns (loss_sum, targets, tokens, grad_norm, flops) as Python numbers: the step's one host sync.
        """
        micro = [next(batches) for _ in range(self.accumulation)]
        targets = torch.stack([b.num_tgt_tokens for b in micro]).sum()
        # the step's target tokens on all ranks; divided by world size because DDP/FSDP average gradients
        denominator = self.strategy.all_reduce(targets.float()).clamp(min=1) / self.world_size
        loss_sum = torch.zeros((), device=parts.device)
        flops = 0.0
        for i, batch in enumerate(micro):
            with self.strategy.no_sync(i == len(micro) - 1), parts.precision.autocast(parts.device):
                logits = forward(batch.src, batch.tgt_in, batch.src_mask)
                summed = token_loss_sum(
                    logits, batch.labels, vocab_size=parts.model.vocab_size, label_smoothing=self.label_smoothing
                )
            loss = summed / denominator
            (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += summed.detach()
            # forward + backward = 3x the forward's matmul FLOPs, at the batch's (padded) shapes
            flops += 3.0 * len(batch) * model.forward_flops(batch.src.shape[1], batch.tgt_in.shape[1])
        if scaler is not None:
            scaler.unscale_(optimizer)
        # max_norm=inf measures the norm without clipping
        grad_norm = self.strategy.clip_grad_norm(model.parameters(), self.max_grad_norm or math.inf)
        tokens = torch.stack([b.num_tokens for b in micro]).sum()
        counts = self.strategy.all_reduce(torch.stack([loss_sum, targets.float(), tokens.float()]))
        stats = torch.cat([counts, grad_norm.float().reshape(1)])  # the norm is global already: not summed
        loss_value, target_count, token_count, norm = stats.tolist()  # the one host sync of the step
        if scaler is not None:
            scaler.step(optimizer)  # skips the update itself when gradients overflowed
            scaler.update()
        elif math.isfinite(loss_value) and math.isfinite(norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, int(target_count), int(token_count), norm, flops * self.world_size

    # ------------------------------------------------------------------ logging, evaluation, saving
    def _print(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def _log_train(self, parts, bar, window, state, optimizer, grad_norm, peak) -> None:
        loss = window["loss_sum"] / max(window["targets"], 1)
        seconds = max(window["seconds"], 1e-9)
        achieved = window["flops"] / seconds
        metrics = {
            "train/loss": loss,
            "train/lr": optimizer.param_groups[0]["lr"],
            "train/grad_norm": grad_norm,
            "train/epoch": state.epoch,
            "perf/tokens_per_s": window["tokens"] / seconds,
            "perf/tokens": state.tokens,
            "perf/flops": state.flops,
            "perf/tflops_per_s": achieved / 1e12,
            "perf/mfu": achieved / (peak * self.world_size),
            "perf/train_minutes": state.train_seconds / 60,
            "perf/global_batch": self.batch_size * self.accumulation * self.world_size,
        }
        if parts.device.type == "cuda":
            metrics["perf/max_memory_gb"] = torch.cuda.max_memory_allocated(parts.device) / 2**30
        bar.set_postfix(
            loss=f"{loss:.3f}", lr=f"{metrics['train/lr']:.2e}", tok_s=f"{metrics['perf/tokens_per_s']:.0f}"
        )
        if self.is_main:
            parts.logger.log(metrics, step=state.step)

    @torch.no_grad()
    def evaluate(self, parts: TrainingParts) -> float:
        """Mean cross-entropy per target token over up to `eval_batches` validation batches (fixed order)."""
        model = parts.model.eval()
        total = torch.zeros((), device=parts.device, dtype=torch.float64)
        count = torch.zeros((), device=parts.device, dtype=torch.float64)
        budget = self.max_tokens_per_batch  # the training token budget bounds validation batches too
        sampler = EpochBatchSampler(
            len(parts.val_set) if budget is None else _dataset_lengths(parts.val_set),
            self.batch_size,
            shuffle=False,
            bucket_size_multiplier=0,  # in order: the first eval_batches batches are not the shortest items
            max_tokens=budget,
            rank=self.rank,
            world_size=self.world_size,
        )
        for i, indices in enumerate(sampler):
            if i >= self.eval_batches:
                break
            batch = parts.collator([parts.val_set[j] for j in indices]).to(parts.device)
            with parts.precision.autocast(parts.device):
                logits = model(batch.src, batch.tgt_in, batch.src_mask)
            total += F.cross_entropy(
                logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            count += batch.num_tgt_tokens
        total, count = self.strategy.all_reduce(torch.stack([total, count])).tolist()
        return total / max(count, 1.0)

    def _samples(self, parts: TrainingParts) -> list[list[str]]:
        if not parts.sample_prompts or parts.decode_tokens is None:
            return []
        from enhanced_tx.generation import GreedySampler, generate

        rows = []
        model = parts.model.eval()
        for prompt in parts.sample_prompts:
            src = prompt[None].to(parts.device)
            with parts.precision.autocast(parts.device):
                out = generate(
                    model,
                    src,
                    max_new_tokens=self.sample_max_new_tokens,
                    sampler=GreedySampler(),
                    bos_id=parts.special_ids["bos_id"],
                    eos_id=parts.special_ids["eos_id"],
                )
            rows.append([parts.decode_tokens(prompt.tolist()), parts.decode_tokens(out[0].tolist())])
        return rows

    def _evaluate_and_save(self, parts, optimizer, scaler, state, budget, manager) -> None:
        val_loss = self.evaluate(parts)
        finite_model = all(torch.isfinite(p).all() for p in parts.model.parameters())
        with self.strategy.full_model(parts.model) as full:  # FSDP: a plain copy, gathered, for generation
            inference = dataclasses.replace(parts, model=full)
            generated = self._generation_metrics(inference)
            samples = self._samples(inference) if self.is_main else []
        is_best = math.isfinite(val_loss) and finite_model and val_loss < state.best_val_loss
        if is_best:
            state.best_val_loss = val_loss
        if self.monitor != "val/loss":
            is_best = finite_model and self._improves(generated[self.monitor], state)
            if is_best:
                state.best_monitored = generated[self.monitor]
        if self.is_main:
            metrics = {
                "val/loss": val_loss,
                "val/perplexity": math.exp(min(val_loss, 50.0)),
                "val/best_loss": state.best_val_loss,
                **generated,
            }
            if self.monitor != "val/loss":
                metrics[self.best_key] = state.best_monitored
            parts.logger.log(metrics, step=state.step)
            if samples:
                parts.logger.log_table("val/samples", ["prompt", "continuation"], samples, step=state.step)
            shown = " | ".join(f"{p!r} -> {c[:60]!r}" for p, c in samples[:1])  # one short sample per eval
            scores = "".join(f" {k.removeprefix('val/')} {v:.2f}" for k, v in generated.items())
            self._print(
                f"step {state.step}: val/loss {val_loss:.4f} (ppl {metrics['val/perplexity']:.1f}){scores} {shown}"
            )
        self._save(parts, optimizer, scaler, state, budget, manager, is_best)

    # ------------------------------------------------------------------ generation metrics, monitor
    @property
    def best_key(self) -> str:
        """Where the best monitored value is logged and summarised: val/best_loss, val/best_bleu, ..."""
        return "val/best_" + self.monitor.removeprefix("val/")

    def best_value(self, state: TrainState) -> float:
        """What fit returns: the best val/loss, or the best monitored metric (-inf if never measured)."""
        if self.monitor == "val/loss":
            return state.best_val_loss
        return -math.inf if state.best_monitored is None else state.best_monitored

    def _improves(self, value: float, state: TrainState) -> bool:
        if not math.isfinite(value):
            return False
        return state.best_monitored is None or value > state.best_monitored  # bleu/chrf: higher is better

    def _configure_from_parts(self, parts: TrainingParts) -> None:
        """Settings that come with the parts (the data's token budget); refuses impossible combinations."""
        self.max_tokens_per_batch = parts.max_tokens_per_batch
        if self.eval_generate and not parts.val_references:
            raise EnhancedTxError(
                f"trainer.eval_generate={self.eval_generate} needs reference translations: use data=pairs, "
                "or set trainer.eval_generate=0"
            )
        if self.eval_generate and not {"bos_id", "eos_id", "pad_id"} <= set(parts.special_ids):
            raise EnhancedTxError("trainer.eval_generate needs bos_id, eos_id and pad_id in TrainingParts.special_ids")

    def _generation_metrics(self, parts: TrainingParts) -> dict[str, float]:
        """val/bleu and val/chrf of greedy outputs for the first eval_generate validation pairs (or {})."""
        if not self.eval_generate:
            return {}
        from enhanced_tx.evaluation.during_training import default_max_new_tokens, generation_metrics

        max_tgt_len = (parts.config.get("data") or {}).get("max_tgt_len")
        return generation_metrics(
            parts.model,
            parts.val_set,
            parts.val_references,
            self.eval_generate,
            special_ids=parts.special_ids,
            decode_tokens=parts.decode_tokens,
            batch_size=self.batch_size,
            max_new_tokens=self.eval_generate_max_new_tokens
            or default_max_new_tokens(parts.model.max_seq_len, max_tgt_len),
            device=parts.device,
            autocast=lambda: parts.precision.autocast(parts.device),
        )

    def _save(self, parts, optimizer, scaler, state, budget, manager, is_best: bool) -> None:
        self.strategy.save_checkpoint(  # every rank: rank 0 writes; FSDP ranks write their shards too
            manager,
            lambda: self._checkpoint_state(parts, optimizer, scaler, state, budget),
            parts.model,
            optimizer,
            state.step,
            is_best,
        )


def _measure_peak(device: torch.device, dtype: torch.dtype) -> float:
    """The matmul peak for MFU, on random matrices drawn from a forked RNG: the training RNG (dropout) is
    the same whether the peak is measured or set, so a resumed run stays bit-identical."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        return measure_matmul_peak(device, dtype)


def _check_weight_shapes(state: dict, path: Path, model: nn.Module) -> None:
    """A full checkpoint from another architecture is a one-line CheckpointError, not a size-mismatch
    traceback (sharded checkpoints are checked by torch.distributed.checkpoint)."""
    from enhanced_tx.checkpoint import check_shapes
    from enhanced_tx.checkpoint import sharded as sharded_checkpoint

    if sharded_checkpoint.is_sharded(state) or not isinstance(state.get("model"), dict):
        return
    check_shapes(path, {k: list(v.shape) for k, v in state["model"].items()}, model.state_dict())


def _total(value) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _dataset_lengths(dataset: Dataset):
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


def _check_evaluation_settings(label_smoothing: float, eval_generate: int, monitor: str) -> list[str]:
    from enhanced_tx.evaluation.during_training import MONITORS

    problems = []
    if not 0.0 <= label_smoothing < 1.0:
        problems.append(f"trainer.label_smoothing={label_smoothing} must be in [0, 1)")
    if eval_generate < 0:
        problems.append(f"trainer.eval_generate={eval_generate} must be >= 0 (0 = off)")
    if monitor not in MONITORS:
        problems.append(f"trainer.monitor={monitor} must be one of {', '.join(MONITORS)}")
    elif monitor != "val/loss" and not eval_generate:
        problems.append(f"trainer.monitor={monitor} needs trainer.eval_generate > 0 (sentences to translate)")
    return problems
