"""`train(cfg)`: compose the parts of a run from a Hydra config and train. Called by `run_train.py`."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerFast

from enhanced_tx.evaluation.decoding import detokenize
from enhanced_tx.evaluation.during_training import validation_references
from enhanced_tx.sweeps.job import run_identity
from enhanced_tx.tracking.run_info import write_run_info
from enhanced_tx.training.distributed import SilentLogger
from enhanced_tx.training.preflight import check_lengths, check_training_config
from enhanced_tx.training.setup import resolve_device, seed_everything
from enhanced_tx.training.trainer import TrainingParts

RESOLVED_CONFIG = "config.resolved.yaml"
TOKENIZER_DIR = "tokenizer"


def prepare_tokenizer(cfg: DictConfig, data, run_dir: Path) -> PreTrainedTokenizerFast:
    """Reuse the run's saved tokenizer (resume), the warm-start source's (trainer.init_from: its weights
    index that tokenizer's ids), or build one; save it into the run."""
    folder = run_dir / TOKENIZER_DIR
    if (folder / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    source = _warm_start_tokenizer(cfg)
    if source is not None:
        print(f"warm start: using the tokenizer of {source.parent} (cfg.tokenizer is not used)")
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(source))
    else:
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
    # conf/trainer/strategy/: rank and world size come from torchrun's environment; only rank 0 writes the
    # run folder, logs and talks to W&B; the others share its folder (docs/distributed.md)
    strategy = instantiate(cfg.trainer.strategy)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if strategy.is_main:
        OmegaConf.save(OmegaConf.create(resolved), run_dir / RESOLVED_CONFIG)
        write_run_info(run_dir)

    # The logger starts before anything else can fail: a failed (sweep) job is a failed W&B run with its error.
    # In a sweep: group = the sweep folder, name = the job's overrides (enhanced_tx/sweeps/job.py).
    choices = group_choices(cfg)
    group, name = run_identity(cfg.get("group"), cfg.get("name"))
    logger = instantiate(cfg.logger) if strategy.is_main else SilentLogger()
    logger.start(
        run_dir=run_dir,
        config=resolved,
        choices=choices,
        tags=[f"{k}={v}" for k, v in sorted(choices.items())],
        group=group,
        name=name,
        job_type="train",
        resume_id=_previous_logger_run_id(cfg.trainer.get("resume"), run_dir),
    )
    exit_code = 1
    try:
        check_training_config(cfg)
        seed_everything(cfg.seed)
        device = strategy.setup(resolve_device(cfg.device))  # joins the process group; cuda:LOCAL_RANK
        data = instantiate(cfg.data)
        # rank 0 first (it trains and saves the tokenizer, fills the caches); the others then load those
        tokenizer = strategy.main_first(lambda: prepare_tokenizer(cfg, data, run_dir))
        train_set, val_set = strategy.main_first(lambda: data.build(tokenizer, Path(cfg.paths.cache_dir)))
        model = instantiate(cfg.model, vocab_size=len(tokenizer))
        check_lengths(model, data)
        if strategy.is_main:
            print(model.summary())
        trainer = instantiate(cfg.trainer, strategy=strategy)
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
            decode_tokens=lambda ids: detokenize(tokenizer, ids),
            special_ids={
                "bos_id": tokenizer.bos_token_id,
                "eos_id": tokenizer.eos_token_id,
                "pad_id": tokenizer.pad_token_id,
            },
            val_references=validation_references(data),
            max_tokens_per_batch=getattr(data, "max_tokens_per_batch", None),
        )
        best = trainer.fit(parts)
        logger.summary({trainer.best_key: best})
        exit_code = 0
    except Exception as error:
        _summarise_error(logger, error)
        raise
    finally:
        logger.finish(exit_code)
        strategy.teardown(clean=exit_code == 0)
    if not strategy.is_main:
        return best
    print(f"run dir: {run_dir}")
    print(f"best {trainer.monitor}: {best:.4f}" if math.isfinite(best) else f"no {trainer.monitor} recorded")
    print(f'generate: python run_generate.py run={run_dir} prompt="The transformer architecture is"')
    return best


def _collator(tokenizer: PreTrainedTokenizerFast):
    from enhanced_tx.data.collate import Collator

    return Collator(pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)


def _previous_logger_run_id(resume: str | None, run_dir: Path) -> str | None:
    """A resumed run continues its W&B run: the id is stored in the checkpoint it resumes from."""
    if not resume:
        return None
    from enhanced_tx.checkpoint import CheckpointManager, load_checkpoint

    path = CheckpointManager(run_dir / "checkpoints").resolve(resume)
    return None if path is None else load_checkpoint(path).get("logger_run_id")


def _summarise_error(logger, error: BaseException) -> None:
    """Put the one-line error into the run's summary (W&B and summary.json) before it is marked failed."""
    import contextlib

    from enhanced_tx.cli import one_line

    with contextlib.suppress(Exception):  # never hide the error being reported
        logger.summary({"error": one_line(error)})


def _warm_start_tokenizer(cfg: DictConfig) -> Path | None:
    init_from = cfg.trainer.get("init_from")
    if not init_from:
        return None
    from enhanced_tx.training.warm_start import source_tokenizer_dir

    return source_tokenizer_dir(init_from)
