"""`TrainingParts`: what `Trainer.fit` gets besides its own settings (built by the composition root)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from enhanced_tx.tracking.protocol import Logger
from enhanced_tx.training.batches import BatchSource, Collator
from enhanced_tx.training.callbacks.base import Callback
from enhanced_tx.training.optim import OptimizerFactory
from enhanced_tx.training.precision import Precision
from enhanced_tx.training.resume import ResumePoint
from enhanced_tx.training.schedule import Schedule


@dataclass
class TrainingParts:
    model: nn.Module
    optimizer_factory: OptimizerFactory
    schedule: Schedule
    precision: Precision
    train_set: Dataset | None
    val_set: Dataset | None
    collator: Collator | None
    logger: Logger
    run_dir: Path
    device: torch.device
    seed: int = 0
    config: dict = dataclasses.field(default_factory=dict)  # resolved config, stored in checkpoints
    max_tokens_per_batch: int | None = None  # token budget per micro-batch (data.max_tokens_per_batch)
    # the checkpoint trainer.resume names, already read by the composition root (read once); None: look it up
    resume_from: ResumePoint | None = None
    callbacks: Sequence[Callback] = ()  # conf/callbacks/ plus what the root wires (samples, BLEU/chrF)
    batches: BatchSource | None = None  # None: map-style batches of train_set (MapStyleBatches)
