"""`train(cfg)`: the composition root of `run_train.py`: builds the parts of a run from a Hydra config and trains."""

from __future__ import annotations

import math
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerFast

from enhanced_tx.checkpoint.atomic import clean_stale_temporaries
from enhanced_tx.data.hf_stream import StreamItems
from enhanced_tx.data.objectives import add_objective_tokens
from enhanced_tx.data.source_markers import run_source_markers
from enhanced_tx.data.tokenizers import load_saved_tokenizer
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.evaluation.during_training import validation_references
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.runtime.device import resolve_device, seed_everything
from enhanced_tx.sweeps.job import run_identity
from enhanced_tx.tasks.commands import generate_command
from enhanced_tx.tracking.protocol import SilentLogger
from enhanced_tx.tracking.run_info import write_run_info
from enhanced_tx.training.callbacks import Callback
from enhanced_tx.training.callbacks.run_warnings import DataSizeWarning, OverfittingWarning
from enhanced_tx.training.parts import TrainingParts
from enhanced_tx.training.preflight import check_lengths, check_training_config
from enhanced_tx.training.resume import (
    ResumePoint,
    ResumeSpec,
    RunRefused,
    check_fresh_folder,
    check_same_run,
    find_resume_point,
    rewind_history,
    start_over,
)
from enhanced_tx.training.trainer import Trainer


def prepare_tokenizer(
    cfg: DictConfig, data, run_dir: Path, resume: ResumePoint | None = None, is_main: bool = True
) -> PreTrainedTokenizerFast:
    """The tokenizer of the run the resumed checkpoint belongs to (its weights index that tokenizer's ids),
    else the warm-start source's (trainer.init_from, likewise), else a new one built from cfg.tokenizer;
    saved into the run. Ranks other than 0 load what rank 0 saved (`strategy.main_first`)."""
    folder = RunFolder(run_dir).tokenizer_dir
    if not is_main:
        return load_saved_tokenizer(folder)
    source, why = _source_tokenizer(cfg, resume)
    if source is not None and source.resolve() == folder.resolve():  # a resume in its own folder
        return load_saved_tokenizer(folder)
    if source is not None:
        print(f"{why}: using the tokenizer of {source.parent} (cfg.tokenizer is not used)")
        tokenizer = load_saved_tokenizer(source)
    else:
        tokenizer = instantiate(cfg.tokenizer).build(data.tokenizer_corpus())
        add_objective_tokens(tokenizer, getattr(data, "objective", None))  # sentinels / <mask>, saved with it
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def _source_tokenizer(cfg: DictConfig, resume: ResumePoint | None) -> tuple[Path | None, str]:
    """A saved tokenizer the run must use, and why: None for a fresh run (even where one lies in its folder)."""
    if resume is not None:
        folder = RunFolder(resume.run_dir).tokenizer_dir
        if not (folder / "tokenizer.json").is_file():  # another tokenizer would give the weights other ids
            raise RunRefused(
                f"cannot resume from {resume.path}: its run's tokenizer {folder} is missing (a resume must use the "
                "tokenizer the run started with); restore that folder, or start a new run (a new hydra.run.dir)"
            )
        return folder, "resume"
    return _warm_start_tokenizer(cfg), "warm start"


def open_run(cfg: DictConfig, run_dir: Path, resolved: dict, is_main: bool = True) -> ResumePoint | None:
    """Before anything is written or logged: the checkpoint `trainer.resume` names, read and verified once
    (None: a fresh start), which must come from a run with the same config; a fresh run needs a folder
    that holds no other run."""
    spec = ResumeSpec.parse(cfg.trainer.get("resume"))
    point = find_resume_point(spec.value, run_dir)
    folder = RunFolder(run_dir)
    if point is not None:
        check_same_run(point, resolved, spec.value)
        if is_main and point.belongs_to(run_dir):  # a killed run logged past its checkpoint: log those once
            rewind_history(run_dir, point.step)
    elif spec.auto:  # nothing saved yet (a first start, or a crash before the first checkpoint)
        if is_main:
            print(f"trainer.resume=auto: no checkpoint in {folder.checkpoints_dir}; starting from scratch")
    elif spec.starts_over:
        aside = start_over(run_dir) if is_main else None
        if aside is not None:
            print(f"trainer.resume=none: starting over in {run_dir}; the old run's files are in {aside}")
    else:
        check_fresh_folder(run_dir)
    if is_main:  # temporary files of writers killed mid-write
        for directory in (folder.root, folder.checkpoints_dir):
            clean_stale_temporaries(directory)
    return point


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
    folder = RunFolder(cfg.paths.output_dir)
    if strategy.is_main:  # one writer per run folder (released by the kernel if this process dies)
        folder.lock_for_writing()
    try:
        return _train_into(cfg, strategy, folder.root)
    finally:
        folder.unlock()


def _train_into(cfg: DictConfig, strategy, run_dir: Path) -> float:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resume = open_run(cfg, run_dir, resolved, strategy.is_main)
    if strategy.is_main:
        OmegaConf.save(OmegaConf.create(resolved), RunFolder(run_dir).resolved_config)
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
        # a resume continues its W&B run; a fork (trainer.resume=PATH into another run) starts its own
        resume_id=resume.logger_run_id if resume is not None and resume.belongs_to(run_dir) else None,
    )
    exit_code = 1
    try:
        check_training_config(cfg)
        seed_everything(cfg.seed)
        device = strategy.setup(resolve_device(cfg.device))  # joins the process group; cuda:LOCAL_RANK
        data = instantiate(cfg.data)
        # rank 0 first (it trains and saves the tokenizer, fills the caches); the others then load those
        tokenizer = strategy.main_first(lambda: prepare_tokenizer(cfg, data, run_dir, resume, strategy.is_main))
        train_set, val_set = strategy.main_first(lambda: data.build(tokenizer, Path(cfg.paths.cache_dir)))
        model = instantiate(cfg.model, vocab_size=len(tokenizer))
        check_lengths(model, data)
        if strategy.is_main:
            print(model.summary())
        trainer = instantiate(cfg.trainer, strategy=strategy)
        logger.summary(
            {"params/total": model.num_parameters(), "params/non_embedding": model.num_parameters(non_embedding=True)}
        )
        collator = _collator(tokenizer)
        # a streamed split (data.streaming=true) is its own batch source; map-style data gets the default one
        batches = None
        if isinstance(train_set, StreamItems):
            batches = train_set.batches(collator, trainer.batch_size, device, strategy.rank, strategy.world_size)
        parts = TrainingParts(
            model=model,
            optimizer_factory=instantiate(cfg.optimizer),
            schedule=instantiate(cfg.scheduler),
            precision=instantiate(cfg.precision),
            train_set=train_set,
            val_set=val_set,
            collator=collator,
            batches=batches,
            logger=logger,
            run_dir=run_dir,
            device=device,
            seed=cfg.seed,
            config=resolved,
            max_tokens_per_batch=getattr(data, "max_tokens_per_batch", None),
            resume_from=resume,
            callbacks=training_callbacks(cfg, trainer, tokenizer, data, val_set, model, train_set),
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
    monitor = trainer.monitor.name
    print(f"best {monitor}: {best:.4f}" if math.isfinite(best) else f"no {monitor} recorded")
    print(f"generate: {generate_command(run_dir, *sample_prompts(cfg, val_set, tokenizer)[:1])}")
    return best


def training_callbacks(
    cfg: DictConfig, trainer: Trainer, tokenizer, data, val_set, model, train_set=None
) -> list[Callback]:
    """conf/callbacks/ (callbacks=[ema,early_stopping]), the run's warnings (data size, overfitting), then the
    in-training samples (sample_prompts) and BLEU/chrF (trainer.eval_generate) that generation and evaluation
    provide."""
    from enhanced_tx.evaluation.during_training import GenerationMetrics, default_max_new_tokens
    from enhanced_tx.generation.samples import SampleContinuations

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks += [DataSizeWarning(*_train_size(train_set)), OverfittingWarning()]
    prompts = sample_prompts(cfg, val_set, tokenizer)
    if prompts:
        callbacks.append(SampleContinuations(prompts, tokenizer, max_new_tokens=trainer.sample_max_new_tokens,
                                             source_markers=run_source_markers(cfg)))  # fmt: skip
    if trainer.eval_generate:
        references = validation_references(data)
        if not references:
            raise EnhancedTxError(
                f"trainer.eval_generate={trainer.eval_generate} needs reference translations: use data=pairs, "
                "or set trainer.eval_generate=0"
            )
        max_new = trainer.eval_generate_max_new_tokens or default_max_new_tokens(
            model.max_seq_len, cfg.data.get("max_tgt_len")
        )
        callbacks.append(GenerationMetrics(val_set, references, trainer.eval_generate, tokenizer=tokenizer,
                                           batch_size=trainer.batch_size, max_new_tokens=max_new))  # fmt: skip
    return callbacks


def sample_prompts(cfg: DictConfig, val_set, tokenizer) -> list[str]:
    """`sample_prompts` as given; null: the first validation sources of the run's own data."""
    from enhanced_tx.generation.sample_prompts import validation_prompts

    given = cfg.get("sample_prompts")
    return list(given) if given is not None else validation_prompts(val_set, tokenizer)


def _train_size(train_set) -> tuple[int | None, float | None]:
    """Training items and their mean tokens (source + target, from the first 64): what DataSizeWarning weighs."""
    try:
        items = len(train_set)
    except TypeError:  # streamed
        return None, None
    sample = [train_set[i] for i in range(min(items, 64))]
    mean = sum(len(s["src"]) + len(s["tgt"]) for s in sample) / len(sample) if sample else None
    return items, mean


def _collator(tokenizer: PreTrainedTokenizerFast):
    from enhanced_tx.data.collate import Collator

    return Collator(pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)


def _summarise_error(logger, error: BaseException) -> None:
    """Put the one-line error into the run's summary (W&B and summary.json) before it is marked failed."""
    import contextlib

    from enhanced_tx.errors import one_line

    with contextlib.suppress(Exception):  # never hide the error being reported
        logger.summary({"error": one_line(error)})


def _warm_start_tokenizer(cfg: DictConfig) -> Path | None:
    init_from = cfg.trainer.get("init_from")
    if not init_from:
        return None
    from enhanced_tx.training.warm_start import source_tokenizer_dir

    return source_tokenizer_dir(init_from)
