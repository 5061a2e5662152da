"""Optimizer construction: weight decay on matrices only (nanoGPT's rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]


def parameter_groups(model: nn.Module) -> list[dict]:
    """Weights with 2+ dimensions (linears, embeddings) decay; norms' gains and 1-d vectors do not."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    # The decay group inherits the factory's weight_decay; the other overrides it with 0.
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(factory: OptimizerFactory, model: nn.Module) -> torch.optim.Optimizer:
    """`factory` is the Hydra `_partial_` optimizer (e.g. AdamW with lr, betas, weight_decay)."""
    return factory(parameter_groups(model))
