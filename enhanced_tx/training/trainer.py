"""The training loop. `fit` and `_optimizer_step` read like the algorithm; the concerns they call live in
their own modules: batches (batch source), evaluator, monitor, metrics (throughput, MFU), state, budget,
precision, the strategy (distribution, checkpoint writing), preemption and callbacks."""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.training.batches import MapStyleBatches
from enhanced_tx.training.budget import Budget
from enhanced_tx.training.distributed import SingleProcess
from enhanced_tx.training.eval_schedule import EvalSchedule
from enhanced_tx.training.loop import LiveRun, build_run, checkpoint_state, save_final_weights
from enhanced_tx.training.monitor import Monitor
from enhanced_tx.training.parts import TrainingParts
from enhanced_tx.training.preemption import PreemptionGuard, TrainingInterrupted
from enhanced_tx.training.progress_bar import ProgressBar
from enhanced_tx.training.settings import check_settings
from enhanced_tx.training.step_loss import batch_flops, micro_batch_loss
from enhanced_tx.training.step_result import StepResult, TrainingDiverged
from enhanced_tx.training.strategy import Strategy


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
        length_bucketing: bool = False,
        bucket_pool_batches: int = 200,
        compile: bool = False,
        compile_pad_to: int | str | None = "auto",
        compile_backend: str = "inductor",
        keep_freed_memory: bool = True,
        resume: str | None = None,
        keep_last: int | str | None = "auto",
        save_half_precision: bool = False,
        save_optimizer: bool = True,
        checkpoint: str = "auto",
        max_nonfinite_steps: int = 25,
        peak_flops: float | None = None,
        sample_max_new_tokens: int = 32,
        progress_bar: bool = True,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        loss_chunk_tokens: int | None = 4096,
        pack_tokens: bool | str = "auto",
        loss_denominator: str = "step",
        init_from: str | None = None,
        eval_generate: int = 0,
        eval_generate_max_new_tokens: int | None = None,
        monitor: str = "val/loss",
        strategy: Strategy | None = None,
    ) -> None:
        check_settings(locals())
        self.batch_size, self.max_steps, self.epochs = batch_size, max_steps, epochs
        self.budget_config = dict(budget or {})
        self.accumulation, self.max_grad_norm = gradient_accumulation_steps, max_grad_norm
        self.eval_every, self.eval_batches, self.log_every = eval_every, eval_batches, log_every
        self.gradient_checkpointing, self.length_bucketing = gradient_checkpointing, length_bucketing
        self.bucket_pool_batches = bucket_pool_batches  # batches per length-sorted pool when bucketing
        self.compile, self.keep_freed_memory = compile, keep_freed_memory
        self.compile_pad_to, self.compile_backend = compile_pad_to, compile_backend  # training/compiling.py
        self.resume, self.keep_last, self.save_half_precision = resume, keep_last, save_half_precision
        # checkpoint: auto | full | weights, resolved by checkpoint.policy; save_optimizer=false: the old "weights"
        self.save_optimizer, self.checkpoint = save_optimizer, checkpoint
        self.max_nonfinite_steps, self.peak_flops, self.progress_bar = max_nonfinite_steps, peak_flops, progress_bar
        self.pack_tokens = False if compile else pack_tokens
        self.label_smoothing, self.z_loss, self.init_from = label_smoothing, z_loss, init_from
        # see step_loss, settings; padding-free steps (pack_tokens) not under compile: packed shapes vary
        self.loss_chunk_tokens, self.loss_denominator = loss_chunk_tokens, loss_denominator
        # read by the composition root, which wires the samples and BLEU/chrF callbacks (no import here)
        self.sample_max_new_tokens = sample_max_new_tokens
        self.eval_generate, self.eval_generate_max_new_tokens = eval_generate, eval_generate_max_new_tokens
        self.monitor = Monitor.named(monitor)
        self.strategy: Strategy = strategy if strategy is not None else SingleProcess()  # conf/trainer/strategy/
        self.stop_reason: str | None = None  # why fit ended early (early stopping), else None

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_main(self) -> bool:
        return self.strategy.is_main

    @property
    def best_key(self) -> str:
        return self.monitor.best_key

    # ------------------------------------------------------------------ the loop
    def fit(self, parts: TrainingParts) -> float:
        """Train until the first limit (or a callback's stop); returns the best monitored value."""
        run = build_run(self, parts)  # model on its device, optimizer, batches; restored when resuming
        state, budget = run.state, run.budget
        bar = ProgressBar(budget, state, enabled=self.progress_bar and self.is_main)
        for callback in run.callbacks:
            callback.on_fit_start(self, run.ctx)
        batches = iter(run.source)  # endless micro-batches
        progress = budget.progress(state.step, state.tokens, state.flops, state.train_seconds)
        evals = EvalSchedule(self.eval_every, budget, progress)  # also a few times per run whatever eval_every
        with PreemptionGuard() as guard:
            while progress < 1.0 and self.stop_reason is None:
                run.model.train()
                for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
                    group["lr"] = base * parts.schedule(progress)
                started = time.perf_counter()
                with run.compiled.active():  # trainer.compile: compiled blocks for the training step only
                    result = self._optimizer_step(
                        run.forward, run.model, run.optimizer, run.scaler, parts, batches, run.targets_per_step
                    )
                seconds = time.perf_counter() - started
                state.record_step(result.tokens, result.flops, seconds, result.finite)
                run.window.add(result.loss_sum, result.targets, result.tokens, seconds, result.flops, result.finite)
                self._check_divergence(state.nonfinite_in_a_row, state.step)
                for callback in run.callbacks:
                    callback.on_step_end(run.ctx)
                progress = budget.progress(state.step, state.tokens, state.flops, state.train_seconds)
                bar.advance(state)

                done = progress >= 1.0
                if state.step % self.log_every == 0 or done:
                    self._log_train(run, result, bar)
                evaluated = evals.due(state.step, progress) or done
                if evaluated:
                    self._evaluate_and_save(run)
                    self.stop_reason = next((c.stop_reason for c in run.callbacks if c.stop_reason), None)
                signum = self.strategy.agreed_signal(guard.signum)  # all ranks stop after the same step
                if signum is not None:
                    if not evaluated:  # not just saved above
                        self._save(run, is_best=False)
                    bar.close()
                    raise TrainingInterrupted(signum, state.step)
        bar.close()
        if self.compile:  # recompiles under changing lengths show here (a warning when they storm)
            run.logger.summary(run.compiled.metrics())
        save_final_weights(self, run)
        if self.stop_reason is not None:
            self._print(f"stopped at step {state.step}: {self.stop_reason}")
            run.logger.summary({"stop_reason": self.stop_reason, "stop_step": state.step})
        for callback in run.callbacks:
            callback.on_fit_end(run.ctx)
        return self.best_value(run)

    def _optimizer_step(
        self, forward, model, optimizer, scaler, parts: TrainingParts, batches, targets_per_step: float | None = None
    ) -> StepResult:
        """One update over `accumulation` micro-batches; the summed loss over the step's own target tokens, or
        over `targets_per_step` (loss_denominator=epoch_mean: a rank's mean per step over the epoch)."""
        micro = [next(batches) for _ in range(self.accumulation)]
        targets = torch.stack([b.num_tgt_tokens for b in micro]).sum()
        # the step's target tokens on all ranks; divided by world size because DDP/FSDP average gradients
        denominator = (torch.tensor(targets_per_step, device=parts.device) if targets_per_step is not None
                       else self.strategy.all_reduce(targets.float()).clamp(min=1) / self.world_size)  # fmt: skip
        loss_sum = torch.zeros((), device=parts.device)
        z_sum = torch.zeros((), device=parts.device)
        flops = 0.0
        for i, batch in enumerate(micro):
            with self.strategy.no_sync(i == len(micro) - 1), parts.precision.autocast(parts.device):
                summed, z_share = micro_batch_loss(forward, model, batch, label_smoothing=self.label_smoothing,
                                                   z_loss=self.z_loss, chunk_tokens=self.loss_chunk_tokens,
                                                   pack=self.pack_tokens)  # fmt: skip
            loss = summed / denominator
            (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += summed.detach()
            z_sum += z_share
            flops += 3.0 * batch_flops(model, batch, self.pack_tokens)  # forward + backward: 3x the forward's
        if scaler is not None:
            scaler.unscale_(optimizer)
        # max_norm=inf measures the norm without clipping
        grad_norm = self.strategy.clip_grad_norm(model.parameters(), self.max_grad_norm or math.inf)
        tokens = torch.stack([b.num_tokens for b in micro]).sum()
        counts = self.strategy.all_reduce(torch.stack([loss_sum, targets.float(), tokens.float(), z_sum]))
        stats = torch.cat([counts, grad_norm.float().reshape(1)])  # the norm is global already: not summed
        loss_value, target_count, token_count, z_value, norm = stats.tolist()  # the one host sync of the step
        if scaler is not None:
            scaler.step(optimizer)  # skips the update itself when gradients overflowed
            scaler.update()
        elif math.isfinite(loss_value) and math.isfinite(norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_value, int(target_count), int(token_count), norm, flops * self.world_size, z_value)

    # ------------------------------------------------------------------ data and limits
    def limits(self) -> dict:
        """The configured limits (stored in checkpoints: a resume with other limits is a changed run)."""
        return {"max_steps": self.max_steps, "epochs": self.epochs, "budget": dict(self.budget_config)}

    def budget(self, source) -> Budget:
        max_steps = self.max_steps
        if self.epochs is not None:
            if not isinstance(source, MapStyleBatches):
                raise EnhancedTxError("trainer.epochs needs a map-style dataset; set trainer.max_steps instead")
            epoch_steps = math.ceil(self.epochs * source.batches_per_epoch() / self.accumulation)
            max_steps = epoch_steps if max_steps is None else min(max_steps, epoch_steps)
        return Budget(max_steps=max_steps, **self.budget_config)

    def _check_divergence(self, in_a_row: int, step: int) -> None:
        if in_a_row >= self.max_nonfinite_steps:
            raise TrainingDiverged(
                f"the loss was non-finite for {in_a_row} steps in a row (step {step}); lower optimizer.lr, "
                "raise trainer.max_grad_norm clipping, or use precision=bf16/fp32"
            )

    # ------------------------------------------------------------------ logging, evaluation, saving
    def _print(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def _log_train(self, run: LiveRun, result: StepResult, bar) -> None:
        metrics = run.window.report(run.state)
        metrics.update({
            "train/lr": run.optimizer.param_groups[0]["lr"],
            "train/grad_norm": result.grad_norm,
            "train/epoch": getattr(run.source, "epoch", 0),
            "perf/global_batch": self.batch_size * self.accumulation * self.world_size,
            **run.compiled.metrics(),  # perf/compilations with trainer.compile
        })  # fmt: skip
        if self.z_loss:  # the z-loss's share of train/loss, this step's
            metrics["train/z_loss"] = result.z_loss_sum / max(result.targets, 1)
        if run.device.type == "cuda":
            metrics["perf/max_memory_gb"] = torch.cuda.max_memory_allocated(run.device) / 2**30
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", lr=f"{metrics['train/lr']:.2e}",
                        tok_s=f"{metrics['perf/tokens_per_s']:.0f}")  # fmt: skip
        run.logger.log(metrics, step=run.state.step)

    def _evaluate_and_save(self, run: LiveRun) -> None:
        state, model = run.state, run.model
        val_loss = run.evaluator.validation_loss(model)
        finite_model = all(torch.isfinite(p).all() for p in model.parameters())
        metrics = {"val/loss": val_loss, "val/perplexity": math.exp(min(val_loss, 50.0))}
        with self.strategy.full_model(model) as full:  # FSDP: a plain copy, gathered, for generation
            run.ctx.model = full
            for callback in run.callbacks:  # samples, BLEU/chrF, the EMA's loss, early stopping
                callback.on_evaluate(run.ctx, metrics)
            run.ctx.model = model
        if finite_model and Monitor().improves(val_loss, state.best_val_loss):
            state.best_val_loss = val_loss
        value = metrics.get(self.monitor.name, math.nan)
        is_best = finite_model and self.monitor.improves(value, state.best_monitored)
        if is_best:
            state.best_monitored = value
        scores = "".join(f" {k.removeprefix('val/')} {v:.2f}" for k, v in metrics.items() if k in run.shown)
        metrics["val/best_loss"] = state.best_val_loss
        if state.best_monitored is not None:
            metrics[self.best_key] = state.best_monitored  # val/best_loss itself when monitoring val/loss
        run.logger.log(metrics, step=state.step)
        self._print(
            f"step {state.step}: val/loss {val_loss:.4f} (ppl {metrics['val/perplexity']:.1f}){scores}"
            + "".join(f" {line}" for line in run.ctx.extra.pop("console", []))
        )
        self._save(run, is_best)

    def best_value(self, run: LiveRun) -> float:
        """What fit returns: the best monitored value (the monitor's worst if never measured)."""
        best = run.state.best_monitored
        return self.monitor.worst if best is None else best

    def _save(self, run: LiveRun, is_best: bool) -> None:
        self.strategy.save_checkpoint(  # every rank: rank 0 writes; FSDP ranks write their shards too
            run.manager, lambda: checkpoint_state(self, run), run.model, run.optimizer, run.state.step, is_best
        )
        for callback in run.callbacks:
            callback.on_save(run.ctx, RunFolder(run.manager.directory.parent))
