"""The built-in sample corpus: docstrings of the Python standard library.

About 1 MB of real English prose, available offline on every machine. Docstrings are read from the
stdlib source files with `ast` (modules are never imported), in sorted file order, so the corpus is a
pure function of the Python version; its cache file is keyed by that version.
"""

from __future__ import annotations

import ast
import os
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

from enhanced_tx.data.cache import atomic_write, resolve_cache_dir

MAX_CHARS = 1_100_000  # stop once the corpus reaches this size (~1 MB; bigger slows the default run)
MIN_DOCSTRING_CHARS = 80  # shorter ones are mostly "Return the foo." one-liners
# Folders whose docstrings are test scaffolding, GUI tooling or vendored third-party code.
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "turtledemo",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "ensurepip",
        "_vendor",
    }
)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def corpus_file_name() -> str:
    return f"stdlib-docstrings-py{sys.version_info.major}.{sys.version_info.minor}.txt"


def sample_corpus_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cached corpus, building it first if needed (a few seconds, once per machine)."""
    path = resolve_cache_dir(cache_dir) / corpus_file_name()
    if not path.is_file():
        text = build_corpus()
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load_sample_corpus(cache_dir: str | os.PathLike | None = None) -> str:
    return sample_corpus_path(cache_dir).read_text(encoding="utf-8")


def build_corpus(stdlib: Path | None = None, max_chars: int = MAX_CHARS) -> str:
    """Concatenate cleaned docstrings (blank-line separated) until `max_chars` is reached."""
    parts: list[str] = []
    size = 0
    for doc in _docstrings(stdlib or Path(sysconfig.get_paths()["stdlib"])):
        parts.append(doc)
        size += len(doc) + 2
        if size >= max_chars:
            break
    return "\n\n".join(parts) + "\n"


def _docstrings(stdlib: Path) -> Iterator[str]:
    for path in _source_files(stdlib):
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning on odd escapes: not our business
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # a file for another Python version, or unreadable: not worth failing for
        yield from _tree_docstrings(tree)


def _source_files(stdlib: Path) -> list[Path]:
    # os.walk with pruning: rglob would descend into site-packages, which can be huge.
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.endswith(".py") and not name.startswith("test_"):
                path = Path(dirpath) / name
                files.append((path.relative_to(stdlib).as_posix(), path))
    return [path for _, path in sorted(files)]


def _tree_docstrings(tree: ast.AST) -> Iterator[str]:
    """Docstrings in source order (module, then classes and functions as they appear)."""
    if isinstance(tree, _DOC_NODES):
        doc = ast.get_docstring(tree, clean=True)  # clean=True dedents like inspect.cleandoc
        if doc and len(doc) >= MIN_DOCSTRING_CHARS:
            yield doc.strip()
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.If, ast.Try)):
            yield from _tree_docstrings(child)
