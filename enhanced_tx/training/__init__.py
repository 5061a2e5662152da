"""Training: the loop and its components (batch source, evaluator, monitor, metrics, state, callbacks),
optimisation, precision, budgets, preemption, distribution strategies and the run composition."""

from enhanced_tx.training.budget import Budget
from enhanced_tx.training.monitor import Monitor
from enhanced_tx.training.parts import TrainingParts
from enhanced_tx.training.precision import BFloat16, Float16, Precision
from enhanced_tx.training.schedule import Constant, Schedule, WarmupCosine
from enhanced_tx.training.state import TrainingState
from enhanced_tx.training.trainer import StepResult, Trainer, TrainingDiverged

__all__ = [
    "BFloat16",
    "Budget",
    "Constant",
    "Float16",
    "Monitor",
    "Precision",
    "Schedule",
    "StepResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingParts",
    "TrainingState",
    "WarmupCosine",
]
