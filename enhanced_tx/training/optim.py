"""Optimizer construction: weight decay on matrices only (nanoGPT's rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
MATRICES, EMBEDDINGS, VECTORS = "hidden_matrices", "embeddings", "vectors"  # parameter group kinds


def parameter_groups(model: nn.Module) -> list[dict]:
    """Weights with 2+ dimensions (linears, embeddings) decay; norms' gains and 1-d vectors do not.

    Each group says what it holds under "kind" (optimizers ignore keys they do not know): the hidden
    layers' matrices (weights of `nn.Linear` modules), the other matrices (token embeddings and tied head,
    position tables), the vectors. Muon (`enhanced_tx.training.optimizers`) takes the first kind only.
    """
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    groups = {MATRICES: [], EMBEDDINGS: [], VECTORS: []}
    for param in model.parameters():
        if param.requires_grad:
            kind = VECTORS if param.dim() < 2 else MATRICES if id(param) in linear_weights else EMBEDDINGS
            groups[kind].append(param)
    # Matrices inherit the factory's weight_decay; vectors override it with 0. Empty kinds are left out.
    overrides = {VECTORS: {"weight_decay": 0.0}}
    return [{"params": params, "kind": kind, **overrides.get(kind, {})} for kind, params in groups.items() if params]


def build_optimizer(factory: OptimizerFactory, model: nn.Module) -> torch.optim.Optimizer:
    """`factory` is the Hydra `_partial_` optimizer (e.g. AdamW with lr, betas, weight_decay)."""
    return factory(parameter_groups(model))
