"""Objectives (`conf/objective/`): how a window of tokens becomes an encoder input and a decoder target.

`prefix_lm` (default; the continuation the text data always had), `span_corruption` (T5) and `denoising`
(BART text infilling). The text-like data sources take one as `objective=`; `bind` fixes it to a tokenizer.
"""

from enhanced_tx.data.objectives.base import Objective, WindowTransform, add_objective_tokens, item_rng
from enhanced_tx.data.objectives.denoising import MASK, Denoising
from enhanced_tx.data.objectives.prefix_lm import PrefixLM
from enhanced_tx.data.objectives.prompts import decode_keeping_objective_tokens, encode_prompt_texts
from enhanced_tx.data.objectives.span_corruption import SENTINEL, SpanCorruption
from enhanced_tx.data.objectives.windows import WindowDataset

__all__ = [
    "MASK",
    "SENTINEL",
    "Denoising",
    "Objective",
    "PrefixLM",
    "SpanCorruption",
    "WindowDataset",
    "WindowTransform",
    "add_objective_tokens",
    "decode_keeping_objective_tokens",
    "encode_prompt_texts",
    "item_rng",
]
