"""Corpus-level translation metrics, computed by sacrebleu (its signatures make scores reproducible)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from enhanced_tx.errors import ConfigError


@dataclass
class MetricSettings:
    """How BLEU and chrF are computed; the defaults are sacrebleu's (BLEU 13a, chrF2)."""

    bleu_tokenize: str = "13a"  # 13a | intl | zh | ja-mecab | ko-mecab | char | none | flores200 ...
    lowercase: bool = False
    chrf_word_order: int = 0  # 0: chrF, 2: chrF++


@dataclass
class CorpusScores:
    """Scores of a set of hypotheses against one reference each; BLEU, chrF and exact match in percent."""

    bleu: float
    chrf: float
    exact_match: float  # percent of hypotheses equal to their reference (surrounding whitespace ignored)
    bleu_signature: str
    chrf_signature: str
    bleu_verbose: str  # sacrebleu's one-line BLEU report: n-gram precisions, brevity penalty, lengths
    chrf_verbose: str  # sacrebleu's one-line chrF report ("chrF2 = ..." or "chrF2++ = ...")
    count: int
    bleu_details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str], settings: MetricSettings | None = None
) -> CorpusScores:
    """Corpus BLEU and chrF (sacrebleu) and exact match of `hypotheses` against `references`."""
    from sacrebleu.metrics import BLEU, CHRF

    settings = settings or MetricSettings()
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ConfigError("no sentences to score: the test set is empty")
    try:
        bleu = BLEU(tokenize=settings.bleu_tokenize, lowercase=settings.lowercase)
    except Exception as error:  # sacrebleu raises bare errors (and needs extras for some tokenizers)
        raise ConfigError(f"metrics.bleu_tokenize={settings.bleu_tokenize!r}: {error}") from None
    chrf = CHRF(word_order=settings.chrf_word_order, lowercase=settings.lowercase)
    hyps, refs = list(hypotheses), [list(references)]
    bleu_score = bleu.corpus_score(hyps, refs)
    chrf_score = chrf.corpus_score(hyps, refs)
    return CorpusScores(
        bleu=float(bleu_score.score),
        chrf=float(chrf_score.score),
        exact_match=exact_match(hypotheses, references),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        bleu_verbose=str(bleu_score),
        chrf_verbose=str(chrf_score),
        count=len(hyps),
        bleu_details={
            "precisions": [float(p) for p in bleu_score.precisions],
            "bp": float(bleu_score.bp),
            "sys_len": int(bleu_score.sys_len),
            "ref_len": int(bleu_score.ref_len),
        },
    )


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Percent of hypotheses identical to their reference after stripping surrounding whitespace."""
    if not hypotheses:
        return 0.0
    same = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True))
    return 100.0 * same / len(hypotheses)
