"""A generated pairs file with a realistic, long-tailed length spread, and a word-level tokenizer for it.

Lengths (tokens per side, before EOS) are log-normal: source length `round(exp(N(ln 14, 0.75)))` clipped to
3..120 (median 14, mean about 18, 1 in 100 above 80), target length the source length times
`exp(N(0, 0.25))`, clipped the same way (translations are about as long as their source, give or take a
quarter). Each token is one of `vocab - 4` words drawn from a Zipf law (exponent 1.1), as words of natural
text are; the tokenizer maps each word to one id, so the token counts are exactly the drawn lengths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass(frozen=True)
class LengthSpread:
    median: float = 14.0
    sigma: float = 0.75  # of the log source length
    target_sigma: float = 0.25  # of the log target/source ratio
    shortest: int = 3
    longest: int = 120

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        src = np.exp(rng.normal(np.log(self.median), self.sigma, n))
        tgt = src * np.exp(rng.normal(0.0, self.target_sigma, n))

        def clip(x: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(x), self.shortest, self.longest).astype(np.int64)

        return clip(src), clip(tgt)


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """Whitespace words `w0 .. w{vocab-5}` -> ids 4.., after <pad> <s> </s> <unk>."""
    words = {token: i for i, token in enumerate(SPECIALS)}
    words.update({f"w{i}": i + len(SPECIALS) for i in range(vocab - len(SPECIALS))})
    backend = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def write_pairs(path: Path, n: int, vocab: int, spread: LengthSpread = LengthSpread(), seed: int = 0) -> Path:
    """`n` JSONL pairs {"source", "target"} of Zipf-drawn words with the spread's lengths."""
    rng = np.random.default_rng(seed)
    src_len, tgt_len = spread.draw(n, rng)
    n_words = vocab - len(SPECIALS)
    ranks = np.arange(1, n_words + 1, dtype=np.float64)
    weights = ranks**-1.1
    weights /= weights.sum()
    words = rng.choice(n_words, size=int(src_len.sum() + tgt_len.sum()), p=weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    position = 0
    with path.open("w") as f:
        for s, t in zip(src_len, tgt_len, strict=True):
            source = " ".join(f"w{w}" for w in words[position : position + s])
            target = " ".join(f"w{w}" for w in words[position + s : position + s + t])
            position += s + t
            f.write(json.dumps({"source": source, "target": target}) + "\n")
    return path
