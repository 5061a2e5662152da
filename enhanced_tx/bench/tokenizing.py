"""Peak memory of tokenizing a big text file (the `tokenize` section of `make bench`).

The corpus is the built-in one repeated to `corpus_mb` megabytes, written twice: as it is (line breaks) and
with every line break replaced by a space (one line). Each file is tokenized the way training does it
(`cached_tokens`: read, decode, chunk, encode, cache) by a BPE tokenizer trained on the built-in corpus, in a
fresh child process, so the figure is that process's peak RSS (VmHWM) and nothing measured before.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from enhanced_tx.bench.table import Table, fmt

LAYOUTS = {"lines": "\n", "one line": " "}  # what a line break becomes


@dataclass
class TokenizeResult:
    layout: str
    corpus_mb: float
    tokens: int
    seconds: float
    start_rss_mb: float  # the child before it reads the file (imports and the tokenizer)
    peak_rss_mb: float

    @property
    def growth_per_mb(self) -> float:
        """Peak growth over the start, per megabyte of text: a bound by the file size keeps this flat."""
        return (self.peak_rss_mb - self.start_rss_mb) / self.corpus_mb


def measure_tokenizing(
    corpus_mb: float = 50.0, vocab_size: int = 8192, layouts: tuple[str, ...] = tuple(LAYOUTS)
) -> list[TokenizeResult]:
    """One result per layout of `LAYOUTS` (see the module's docstring)."""
    from enhanced_tx.data.corpus import sample_corpus_path
    from enhanced_tx.data.encoding import text_chunks
    from enhanced_tx.data.tokenizers import BPETokenizer

    text = Path(sample_corpus_path(None)).read_text(encoding="utf-8")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        folder = Path(tmp)
        BPETokenizer(vocab_size=vocab_size).build(text_chunks(text)).save_pretrained(str(folder / "tokenizer"))
        size = int(corpus_mb * 1e6)
        corpus = (text * (size // len(text) + 1))[:size]
        for layout in layouts:
            line_break = LAYOUTS[layout]
            path = folder / f"corpus-{layout.replace(' ', '_')}.txt"
            path.write_text(corpus.replace("\n", line_break), encoding="utf-8")
            results.append(_in_child(layout, corpus_mb, path, folder))
            path.unlink()
    return results


def _in_child(layout: str, corpus_mb: float, path: Path, folder: Path) -> TokenizeResult:
    command = [sys.executable, "-m", "enhanced_tx.bench.tokenizing", str(path), str(folder)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return TokenizeResult(layout=layout, corpus_mb=corpus_mb, **figures)


def tokenize_table(results: list[TokenizeResult]) -> Table:
    table = Table(
        "Tokenizing a big text file (BPE, in a fresh process)",
        ["layout", "MB", "tokens", "seconds", "start RSS MB", "peak RSS MB", "growth MB / MB"],
    )
    for r in results:
        table.add(
            r.layout, fmt(r.corpus_mb), r.tokens, fmt(r.seconds, 1), fmt(r.start_rss_mb), fmt(r.peak_rss_mb),
            fmt(r.growth_per_mb, 1),
        )  # fmt: skip
    table.notes.append(
        "the built-in corpus repeated; 'one line' has every line break replaced by a space. Growth per MB of text "
        "stays flat when memory follows the file's size, not its layout."
    )
    return table


def _peak_rss_mb() -> float:
    """This process's peak RSS since it started. getrusage's ru_maxrss is not that in a child: it carries the
    parent's RSS at the fork over exec. Linux's VmHWM belongs to the new program alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def _child(path: str, folder: str) -> dict:
    from enhanced_tx.data.text import cached_tokens
    from enhanced_tx.data.tokenizers import load_saved_tokenizer

    tokenizer = load_saved_tokenizer(Path(folder) / "tokenizer")
    start = _peak_rss_mb()
    began = time.perf_counter()
    tokens = cached_tokens(path, "data.path", tokenizer, Path(folder) / "cache")
    seconds = time.perf_counter() - began
    return {"tokens": len(tokens), "seconds": seconds, "start_rss_mb": start, "peak_rss_mb": _peak_rss_mb()}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2])))
