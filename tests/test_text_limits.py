"""Sizes that would make native code abort are bounded first; text without line breaks tokenizes in bounded
memory, to the same tokens."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from enhanced_tx.data.encoding import CHUNK_CHARS, encode_stream, text_chunks
from enhanced_tx.data.errors import DataError
from enhanced_tx.data.tokenizers import MAX_VOCAB_SIZE, BPETokenizer, ByteTokenizer

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "attention",
    "looks",
    "at",
    "every",
    "position",
]


def _one_line(n_words: int) -> str:
    return " ".join(WORDS[(i * 7) % len(WORDS)] + ("," if i % 13 == 0 else "") for i in range(n_words))


@pytest.mark.parametrize("size", [10**9, MAX_VOCAB_SIZE + 1])
def test_a_vocabulary_beyond_the_bound_is_one_line_before_the_tokenizers_library(size):
    with pytest.raises(DataError, match=rf"tokenizer.vocab_size={size} is above the bound {MAX_VOCAB_SIZE}"):
        BPETokenizer(vocab_size=size)
    with pytest.raises(DataError, match="tokenizer.min_frequency=-1 must be between 0"):
        BPETokenizer(min_frequency=-1)


def test_a_text_without_line_breaks_is_cut_into_bounded_chunks_that_concatenate_back():
    text = _one_line(20_000) + "\n" + "x" * (3 * CHUNK_CHARS + 5)  # words, then a line with no whitespace
    chunks = list(text_chunks(text))
    assert "".join(chunks) == text
    assert max(map(len, chunks)) <= 2 * CHUNK_CHARS  # a chunk is lines (or pieces) up to CHUNK_CHARS, plus one
    assert len(chunks) > len(text) // (2 * CHUNK_CHARS)
    # cut before a space between two words: the next chunk starts with " word"
    assert all(c.startswith(" ") and not c[1].isspace() for c in chunks[1:] if not c.startswith("x"))


@pytest.mark.parametrize("tokenizer", ["bpe", "byte"])
def test_chunking_a_long_line_at_spaces_keeps_the_tokens_of_the_whole_line(tokenizer):
    text = _one_line(6_000) + "  double  spaces stay  together"
    built = BPETokenizer(vocab_size=300).build([text[:20_000]]) if tokenizer == "bpe" else ByteTokenizer().build()
    whole = Tokenizer.from_str(built.backend_tokenizer.to_str()).encode(text, add_special_tokens=False).ids
    assert len(text) > 4 * CHUNK_CHARS
    assert encode_stream(built, text).tolist() == whole


@pytest.mark.slow
def test_tokenizing_a_file_without_line_breaks_stays_bounded_by_its_size():
    """Today's main: 2 MB on one line grew the process by ~330 MB (167 MB a MB); now ~50 MB a MB at most."""
    from enhanced_tx.bench.tokenizing import measure_tokenizing

    (result,) = measure_tokenizing(corpus_mb=2, vocab_size=512, layouts=("one line",))
    assert result.tokens > 500_000
    assert result.growth_per_mb < 80, result


def test_the_bench_reports_tokenizing_and_reads_its_json_back():
    from enhanced_tx.bench import report
    from enhanced_tx.bench.runner import Results
    from enhanced_tx.bench.tokenizing import TokenizeResult

    measured = [TokenizeResult("lines", 50.0, 12_701_000, 74.2, 465.0, 533.0)]
    machine = {"cpu": "x", "cpus": 2, "cpu_isa": "avx2", "torch": "2", "transformers": "5", "date": "today"}
    results = Results.from_dict(Results(config={}, machine=machine, tokenize=measured).to_dict())
    assert results.tokenize == measured and measured[0].growth_per_mb == pytest.approx(68 / 50)
    assert "Tokenizing a big text file" in report.text(results) and "| lines | 50 | 12701000 |" in report.markdown(
        results
    )


def test_a_size_too_large_to_allocate_is_one_line_from_the_entry_point(capsys):
    import torch
    from omegaconf import OmegaConf

    from enhanced_tx.cli import guarded

    def task(cfg):
        return torch.empty(10**14, dtype=torch.uint8)  # 100 TB: refused by the allocator, not the OOM killer

    with pytest.raises(SystemExit) as stopped:
        guarded(task)(OmegaConf.create({}))
    (line,) = capsys.readouterr().err.splitlines()
    assert stopped.value.code == 1
    assert line.startswith("error: RuntimeError: ") and line.endswith(
        "(the config asks for more memory than there is: lower its sizes)"
    )
