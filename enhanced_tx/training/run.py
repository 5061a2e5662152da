"""`train(cfg)`: compose the parts of a run from a Hydra config and train. Called by `run_train.py`."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerFast

from enhanced_tx.tracking.run_info import write_run_info
from enhanced_tx.training.setup import resolve_device, seed_everything
from enhanced_tx.training.trainer import TrainingParts

RESOLVED_CONFIG = "config.resolved.yaml"
TOKENIZER_DIR = "tokenizer"


def prepare_tokenizer(cfg: DictConfig, data, run_dir: Path) -> PreTrainedTokenizerFast:
    """Reuse the run's saved tokenizer (resume) or build one and save it into the run."""
    folder = run_dir / TOKENIZER_DIR
    if (folder / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    tokenizer = instantiate(cfg.tokenizer).build(data.tokenizer_corpus())
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def group_choices(cfg: DictConfig) -> dict[str, str]:
    """Which option of each config group this run used (from `hydra.runtime.choices` when available)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
    except ValueError:  # composed without @hydra.main (tests): fall back to what was recorded in the config
        choices = cfg.get("choices") or {}
    return {k: str(v) for k, v in dict(choices).items() if not k.startswith("hydra") and v is not None}


def train(cfg: DictConfig) -> float:
    """Build everything from `cfg`, train, and return the best validation loss."""
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    OmegaConf.save(OmegaConf.create(resolved), run_dir / RESOLVED_CONFIG)
    write_run_info(run_dir)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    data = instantiate(cfg.data)
    tokenizer = prepare_tokenizer(cfg, data, run_dir)
    train_set, val_set = data.build(tokenizer, Path(cfg.paths.cache_dir))
    model = instantiate(cfg.model, vocab_size=len(tokenizer))
    print(model.summary())
    choices = group_choices(cfg)

    logger = instantiate(cfg.logger)
    trainer = instantiate(cfg.trainer)
    resume_id = _previous_logger_run_id(trainer, run_dir)
    logger.start(
        run_dir=run_dir,
        config=resolved,
        choices=choices,
        tags=[f"{k}={v}" for k, v in sorted(choices.items())],
        group=cfg.get("group"),
        name=cfg.get("name"),
        job_type="train",
        resume_id=resume_id,
    )
    exit_code = 1
    try:
        logger.summary(
            {"params/total": model.num_parameters(), "params/non_embedding": model.num_parameters(non_embedding=True)}
        )
        parts = TrainingParts(
            model=model,
            optimizer_factory=instantiate(cfg.optimizer),
            schedule=instantiate(cfg.scheduler),
            precision=instantiate(cfg.precision),
            train_set=train_set,
            val_set=val_set,
            collator=_collator(tokenizer),
            logger=logger,
            run_dir=run_dir,
            device=device,
            seed=cfg.seed,
            config=resolved,
            sample_prompts=[
                torch.tensor(tokenizer.encode(p, add_special_tokens=False)) for p in cfg.get("sample_prompts") or []
            ],
            decode_tokens=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            special_ids={"bos_id": tokenizer.bos_token_id, "eos_id": tokenizer.eos_token_id},
        )
        best = trainer.fit(parts)
        logger.summary({"val/best_loss": best})
        exit_code = 0
    finally:
        logger.finish(exit_code)
    print(f"run dir: {run_dir}")
    print(f"best val/loss: {best:.4f}" if math.isfinite(best) else "no validation loss recorded")
    print(f'generate: python run_generate.py run={run_dir} prompt="The transformer architecture is"')
    return best


def _collator(tokenizer: PreTrainedTokenizerFast):
    from enhanced_tx.data.collate import Collator

    return Collator(pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)


def _previous_logger_run_id(trainer, run_dir: Path) -> str | None:
    """A resumed run continues its W&B run: the id is stored in the checkpoint it resumes from."""
    if not trainer.resume:
        return None
    from enhanced_tx.checkpoint import CheckpointManager, load_checkpoint

    path = CheckpointManager(run_dir / "checkpoints").resolve(trainer.resume)
    return None if path is None else load_checkpoint(path).get("logger_run_id")
