"""Training: the loop, optimisation, precision, budgets, preemption and the run composition."""

from enhanced_tx.training.budget import Budget
from enhanced_tx.training.precision import BFloat16, Float16, Precision
from enhanced_tx.training.schedule import Constant, Schedule, WarmupCosine
from enhanced_tx.training.trainer import Trainer, TrainingDiverged, TrainingParts, TrainState

__all__ = [
    "BFloat16",
    "Budget",
    "Constant",
    "Float16",
    "Precision",
    "Schedule",
    "Trainer",
    "TrainingDiverged",
    "TrainingParts",
    "TrainState",
    "WarmupCosine",
]
