"""Train an enhanced encoder-decoder Transformer: `python run_train.py [overrides]`.

Seed-style flags are accepted too and mapped to overrides (`--batch_size 8` -> `trainer.batch_size=8`).
Returns the best validation loss, the value an Optuna sweep minimises.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from enhanced_tx.cli import guarded, translate_legacy_flags
from enhanced_tx.configcheck import check_command_line
from enhanced_tx.launch import prepare_argv
from enhanced_tx.overrides import check_group_options
from enhanced_tx.tasks.resume_argv import expand_resume


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@guarded
def main(cfg: DictConfig) -> float:
    from enhanced_tx.tasks.train import train

    return train(cfg)


def _preflight(cfg: DictConfig) -> None:
    from enhanced_tx.training.preflight import check_training_config

    check_training_config(cfg)


if __name__ == "__main__":
    translate_legacy_flags()
    expand_resume()  # resume=RUN_DIR: the run's saved overrides + trainer.resume=auto hydra.run.dir=RUN_DIR
    prepare_argv()  # trainer.strategy=ddp; under torchrun: one shared run folder, only rank 0 writes .hydra/
    check_group_options(Path(__file__).parent / "conf")
    # before Hydra creates a run folder: unknown keys, wrong types, missing values, impossible settings
    check_command_line(Path(__file__).parent / "conf", "train", check=_preflight)
    main()
