"""Evaluate a trained run on a test set: `python run_eval.py run=latest data=pairs data.path=test.jsonl`.

Pairs: decodes every source (any sampler) and reports corpus BLEU and chrF (sacrebleu, with signatures),
exact match, mean output length and tokens/s. Text / sample data: loss and perplexity. Results go to
`<run>/eval/<name>.json` (and `.jsonl` with every hypothesis) and to the run's W&B run. See docs/evaluation.md.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from enhanced_tx.cli import guarded
from enhanced_tx.configcheck import check_command_line
from enhanced_tx.overrides import check_group_options


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@guarded
def main(cfg: DictConfig) -> None:
    from enhanced_tx.tasks.evaluate import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    check_group_options(Path(__file__).parent / "conf")
    check_command_line(Path(__file__).parent / "conf", "eval")
    main()
