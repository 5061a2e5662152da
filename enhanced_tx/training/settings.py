"""The trainer's settings checked together: every impossible value in one line, before any work."""

from __future__ import annotations

from enhanced_tx.checkpoint.policy import check_policy
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.training.compiling import check_compile_settings
from enhanced_tx.training.monitor import MONITORS

LOSS_DENOMINATORS = ("epoch_mean", "step")


def check_settings(settings: dict) -> None:
    """Every impossible trainer setting in one line (Hydra builds the trainer first: fail before any work)."""
    problems = [
        f"trainer.{k}={settings[k]} must be >= 1"
        for k in (
            "batch_size",
            "gradient_accumulation_steps",
            "eval_every",
            "log_every",
            "eval_batches",
            "bucket_pool_batches",
        )
        if settings[k] < 1
    ]
    if settings["epochs"] is not None and settings["epochs"] <= 0:
        problems.append(f"trainer.epochs={settings['epochs']} must be positive")
    if not 0.0 <= settings["label_smoothing"] < 1.0:
        problems.append(f"trainer.label_smoothing={settings['label_smoothing']} must be in [0, 1)")
    if settings["z_loss"] < 0:
        problems.append(f"trainer.z_loss={settings['z_loss']} must be >= 0 (0 = off; PaLM used 1e-4)")
    chunk = settings["loss_chunk_tokens"]
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        problems.append(f"trainer.loss_chunk_tokens={chunk} must be a positive whole number of rows, or null (off)")
    pack = settings["pack_tokens"]
    if pack not in (True, False, "auto"):
        problems.append(f"trainer.pack_tokens={pack} must be true, false or auto")
    elif pack is True and settings["compile"]:
        problems.append("trainer.pack_tokens=true needs trainer.compile=false (packed shapes change every batch)")
    if settings["loss_denominator"] not in LOSS_DENOMINATORS:
        problems.append(
            f"trainer.loss_denominator={settings['loss_denominator']} must be one of {', '.join(LOSS_DENOMINATORS)}"
        )
    problems += check_compile_settings(settings["compile_pad_to"], settings["compile_backend"], settings["compile"])
    if settings["eval_generate"] < 0:
        problems.append(f"trainer.eval_generate={settings['eval_generate']} must be >= 0 (0 = off)")
    monitor = settings["monitor"]
    if monitor not in MONITORS:
        problems.append(f"trainer.monitor={monitor} must be one of {', '.join(MONITORS)}")
    elif monitor != "val/loss" and not settings["eval_generate"]:
        problems.append(f"trainer.monitor={monitor} needs trainer.eval_generate > 0 (sentences to translate)")
    policy = check_policy(settings["checkpoint"], settings["keep_last"])  # what a run keeps on disk
    if policy:
        problems.append(policy)
    if problems:
        raise EnhancedTxError("; ".join(problems))
