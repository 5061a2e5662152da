"""Composition roots, the top layer: `train` (run_train.py) builds a run from a Hydra config: data, tokenizer,
model, trainer, logger and callbacks (conf/callbacks/ plus generation's samples and evaluation's BLEU/chrF)."""
