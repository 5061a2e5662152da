"""Generate from a trained run: `python run_generate.py run=latest prompt="..." sampler=top_p max_new_tokens=100`.

Rebuilds the model and tokenizer from the run folder's resolved config (see conf/generate.yaml for the keys).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from enhanced_tx.cli import guarded
from enhanced_tx.configcheck import check_command_line
from enhanced_tx.overrides import check_group_options


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
@guarded
def main(cfg: DictConfig) -> None:
    from enhanced_tx.tasks.generate import generate_text

    generate_text(cfg)


if __name__ == "__main__":
    check_group_options(Path(__file__).parent / "conf")
    check_command_line(Path(__file__).parent / "conf", "generate")
    main()
