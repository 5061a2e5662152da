"""Special tokens around each source of a pairs task (`data.source_markers`): none, eos, or bos_eos.

BART and T5 end every source with EOS (BART also starts it with BOS); a source without them gives the
encoder no token that marks where the sentence ends. On the quality bench (docs/benchmarks.md, "Quality")
`bos_eos` lowers val/loss at step 500 by about 0.1. Training data, `run_eval.py`, `run_generate.py` and the
in-training samples all mark sources the way the run was trained: the choice is read back from the run's
config, and a run trained before the option existed reads as `none`.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from enhanced_tx.errors import ConfigError

# name -> (BOS before the text, EOS after it): the one table every path reads
SOURCE_MARKERS = {"none": (False, False), "eos": (False, True), "bos_eos": (True, True)}


def check_source_markers(markers: object) -> str:
    if markers not in SOURCE_MARKERS:
        raise ConfigError(f"data.source_markers={markers!r} must be one of {', '.join(SOURCE_MARKERS)}")
    return str(markers)


def marker_count(markers: str) -> int:
    return sum(SOURCE_MARKERS[check_source_markers(markers)])


def mark_source(
    ids: Sequence[int], markers: str, bos_id: int, eos_id: int, max_len: int, keep_end: bool = False
) -> list[int]:
    """`ids` with the markers added, at most `max_len` tokens in all: the text is cut first (its start, or its
    end with `keep_end`, is kept), so a long source still ends with EOS."""
    bos, eos = SOURCE_MARKERS[check_source_markers(markers)]
    room = max(max_len - bos - eos, 0)
    body = list(ids[-room:] if keep_end and room else ids[:room])
    return [bos_id] * bos + body + [eos_id] * eos


def run_source_markers(config: DictConfig | None) -> str:
    """How the run whose config this is marked its sources (`none` for runs without the key)."""
    markers = OmegaConf.select(config, "data.source_markers", default=None) if config is not None else None
    return check_source_markers(markers or "none")
