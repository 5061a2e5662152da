"""Parsing source/target pair files (JSONL or TSV) into string pairs, with line-numbered errors."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from enhanced_tx.data.errors import DataError
from enhanced_tx.data.files import read_text

Pair = tuple[str, str]
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "tsv"}
SKIP_HINT = "fix the line or set data.skip_bad_lines=true"


class BadLine(Exception):
    """One unusable line; becomes a DataError, or a skipped line with `skip_bad_lines`."""

    def __init__(self, line: int, reason: str, fix: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason, self.fix = line, reason, fix


def resolve_format(path: str, fmt: str) -> str:
    if fmt == "auto":
        ext = Path(path).suffix.lower()
        if ext not in EXTENSIONS:
            raise DataError(
                f"data.format=auto cannot tell the format of {path} from its extension '{ext}'; "
                "set data.format=jsonl or data.format=tsv"
            )
        return EXTENSIONS[ext]
    if fmt not in READERS:
        raise DataError(f"data.format={fmt} is not one of auto, {', '.join(READERS)}")
    return fmt


def read_pairs(path: str, key: str, fmt: str, source_field: str, target_field: str, skip_bad_lines: bool) -> list[Pair]:
    """All pairs of the file; bad lines raise, or are skipped with one warning that counts them."""
    reader = READERS[resolve_format(path, fmt)]
    text = read_text(path, key, example="/abs/pairs.jsonl")
    pairs: list[Pair] = []
    bad: list[BadLine] = []
    for item in reader(text, source_field, target_field):
        if isinstance(item, BadLine):
            if not skip_bad_lines:
                raise DataError(f"{key}={path} {item}; {item.fix}")
            bad.append(item)
        else:
            pairs.append(item)
    if not pairs:
        first = f" (first bad {bad[0]}; {bad[0].fix})" if bad else ""
        raise DataError(f"{key}={path} has no usable source/target pairs{first}")
    if bad:
        warnings.warn(f"{key}={path}: skipped {len(bad)} bad lines (first: {bad[0]})", stacklevel=2)
    return pairs


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends verbatim.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _check_pair(number: int, source: object, target: object) -> Pair | BadLine:
    if not isinstance(source, (str, int, float)) or isinstance(source, bool) or not str(source).strip():
        return BadLine(number, f"empty or non-text source {source!r:.40}", SKIP_HINT)
    if not isinstance(target, (str, int, float)) or isinstance(target, bool):
        return BadLine(number, f"non-text target {target!r:.40}", SKIP_HINT)
    return str(source), str(target)


def read_jsonl(text: str, source_field: str, target_field: str) -> Iterator[Pair | BadLine]:
    """One JSON object a line; a `.json` file holding one array of objects works too."""
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            yield BadLine(err.lineno, f"invalid JSON ({err.msg})", "fix the file")
            return
        numbered: Iterator[tuple[int, object]] = enumerate(records, 1)
    else:
        numbered = _json_lines(text)
    for number, record in numbered:
        if isinstance(record, BadLine):
            yield record
            continue
        if not isinstance(record, dict):
            yield BadLine(number, f"expected a JSON object, got {type(record).__name__}", SKIP_HINT)
            continue
        missing = next((f for f in (source_field, target_field) if f not in record), None)
        if missing is not None:
            config_key = "data.source_field" if missing == source_field else "data.target_field"
            fields = ", ".join(map(str, record)) or "none"
            yield BadLine(number, f"no field '{missing}' (fields: {fields})", f"set {config_key}=<field name>")
            continue
        yield _check_pair(number, record[source_field], record[target_field])


def _json_lines(text: str) -> Iterator[tuple[int, object]]:
    for number, line in _lines(text):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            yield (
                number,
                BadLine(
                    number,
                    f"invalid JSON ({err.msg}, column {err.colno})",
                    SKIP_HINT,
                ),
            )


def read_tsv(text: str, source_field: str, target_field: str) -> Iterator[Pair | BadLine]:
    """`source<TAB>target` lines; a first (non-blank) line equal to the two field names is a header and skipped."""
    first = True
    for number, line in _lines(text):
        columns, is_first, first = line.split("\t"), first, False
        if len(columns) != 2:
            yield BadLine(
                number,
                f"expected 2 tab-separated columns (source, target), found {len(columns)}",
                SKIP_HINT,
            )
        elif is_first and columns == [source_field, target_field]:
            continue
        else:
            yield _check_pair(number, *columns)


READERS: dict[str, Callable[[str, str, str], Iterator[Pair | BadLine]]] = {"jsonl": read_jsonl, "tsv": read_tsv}
