"""Device choice and seeding, shared by training, generation and evaluation."""

from __future__ import annotations

import random

import numpy as np
import torch

from enhanced_tx.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else CPU; an explicit `cuda` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
