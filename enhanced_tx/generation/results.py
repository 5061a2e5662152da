"""Generation settings checked before the model loads, and the JSONL results file written as results come.

`run_generate.py` validates what it can before any work (numbers, where results go), loads the run, checks
the lengths against the model, then writes each batch's rows the moment they exist: a generation killed
halfway keeps what it finished, and a folder it cannot write to is one line before anything is generated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.writable import check_writable_file


def positive_setting(cfg: Mapping, key: str) -> int:
    """`cfg[key]` as a whole number >= 1; zero, negatives and non-numbers are errors, never a default."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value} must be a whole number >= 1, e.g. {key}=1")
    return value


def check_max_new_tokens(max_new_tokens: int, max_seq_len: int, run_dir: Path) -> None:
    """A target longer than the model's positions fails at that step (after all the work before it): now."""
    if max_new_tokens > max_seq_len:
        raise ConfigError(
            f"max_new_tokens={max_new_tokens} exceeds model.max_seq_len={max_seq_len} of {run_dir} (the longest "
            f"target it can decode); pass max_new_tokens<={max_seq_len}"
        )


def output_path(cfg: Mapping, run_dir: Path, prompts_file: Path) -> Path:
    """`output_file`, or RUN/generations/<prompts file stem>.jsonl, checked writable (one line if not)."""
    path = Path(cfg.get("output_file") or RunFolder(run_dir).generations_dir / f"{prompts_file.stem}.jsonl")
    return check_writable_file(path.expanduser(), "output_file")


class ResultsFile:
    """JSONL, one row per continuation: {"index", "sequence", "prompt", "text"} and what made it (`made_with`:
    run, checkpoint, sampler, sampler_settings, seed, max_new_tokens), flushed after each batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.made_with: dict = {}  # run, checkpoint, sampler + settings, seed: added to every row

    def open(self) -> None:
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, first_index: int, prompts: Sequence[str], texts: Sequence[str], copies: int) -> None:
        """The continuations of `prompts` (numbered from `first_index`), `copies` per prompt, in order."""
        if self._file is None:
            raise RuntimeError("ResultsFile.write before open()")
        for i, text in enumerate(texts):
            prompt = i // copies
            row = {"index": first_index + prompt, "sequence": i % copies, "prompt": prompts[prompt], "text": text,
                   **self.made_with}  # fmt: skip
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()  # in the OS's hands: a killed process loses none of it

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
