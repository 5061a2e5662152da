"""Train an enhanced encoder-decoder Transformer: `python run_train.py [overrides]`.

Seed-style flags are accepted too and mapped to overrides (`--batch_size 8` -> `trainer.batch_size=8`).
Returns the best validation loss, the value an Optuna sweep minimises.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from enhanced_tx.cli import guarded, translate_legacy_flags


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@guarded
def main(cfg: DictConfig) -> float:
    from enhanced_tx.training.run import train

    return train(cfg)


if __name__ == "__main__":
    translate_legacy_flags()
    main()
