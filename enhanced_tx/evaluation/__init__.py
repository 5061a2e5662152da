"""Evaluation: scoring trained models with numbers a researcher can trust and reproduce.

- `metrics`: corpus BLEU and chrF (sacrebleu, with signatures) and exact match.
- `decoding`: decoding a list of sources in batches (`decode_sources`), shared by `run_eval.py` and
  `trainer.eval_generate`, so both report the same numbers for the same model.
- `translation`, `language_model`: scoring on pairs (BLEU, chrF, ...) and on text (loss, perplexity).
- `during_training`: val/bleu and val/chrf at each evaluation of a training run.
- `records`, `tracking`, `run`: the `run_eval.py` task: eval/<name>.{json,jsonl} and the run's W&B run.
See docs/evaluation.md.
"""

from enhanced_tx.evaluation.metrics import CorpusScores, MetricSettings, corpus_scores, exact_match

__all__ = ["CorpusScores", "MetricSettings", "corpus_scores", "exact_match"]
