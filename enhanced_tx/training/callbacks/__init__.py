"""Training callbacks (`conf/callbacks/`, `callbacks=[ema,early_stopping]`): one class, one YAML file each.

Generation and evaluation provide their own (in-training samples, BLEU/chrF); the composition root wires
them in, so the trainer imports neither."""

from enhanced_tx.training.callbacks.base import Callback, LoopContext
from enhanced_tx.training.callbacks.early_stopping import EarlyStopping
from enhanced_tx.training.callbacks.ema import EMA

__all__ = ["EMA", "Callback", "EarlyStopping", "LoopContext"]
