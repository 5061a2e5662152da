"""The quality bench's real task: English -> German pairs from compiled gettext catalogs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from enhanced_tx.data.catalog_pairs import build_catalog_pairs, collect_pairs, usable
from enhanced_tx.data.errors import DataError


def write_mo(path: Path, entries: dict[str, str]) -> None:
    """A GNU .mo file (the format msgfmt writes): header, two offset tables, then the strings."""
    keys = sorted(entries)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(entries[k].encode() + b"\0" for k in keys)
    start = 7 * 4 + 16 * len(keys)
    key_table, value_table, offset = [], [], 0
    for k in keys:
        key_table += [len(k.encode()), start + offset]
        offset += len(k.encode()) + 1
    offset = 0
    for k in keys:
        value_table += [len(entries[k].encode()), start + len(ids) + offset]
        offset += len(entries[k].encode()) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + 8 * len(keys), 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        header
        + struct.pack(f"{len(key_table)}i", *key_table)
        + struct.pack(f"{len(value_table)}i", *value_table)
        + ids
        + strs
    )


HEADER = {"": "Content-Type: text/plain; charset=UTF-8\n"}


def locale_tree(tmp_path: Path, n: int = 30) -> Path:
    root = tmp_path / "locale"
    write_mo(
        root / "de" / "LC_MESSAGES" / "a.mo",
        {**HEADER, **{f"file {i} not found": f"Datei {i} nicht gefunden" for i in range(n)}},
    )
    write_mo(
        root / "de" / "LC_MESSAGES" / "b.mo",
        {
            **HEADER,
            "file 0 not found": "another translation",  # a.mo sorts first: its translation wins
            "same": "same",  # untranslated copy
            "two\nlines": "zwei\nZeilen",
            "menu\x04Open": "Öffnen",  # context stripped
            "x" * 200: "y",  # too long
        },
    )
    (root / "de" / "LC_MESSAGES" / "legacy.mo").write_bytes(b"not a catalog")
    return root


def test_pairs_keep_real_short_translations_first_file_wins(tmp_path):
    root = locale_tree(tmp_path)
    pairs, read, skipped = collect_pairs(sorted((root / "de" / "LC_MESSAGES").glob("*.mo")))
    found = dict(pairs)
    assert found["file 0 not found"] == "Datei 0 nicht gefunden"
    assert found["Open"] == "Öffnen"
    assert "same" not in found and "two\nlines" not in found and "x" * 200 not in found
    assert len(found) == 31 and read == ["a.mo", "b.mo"] and skipped == ["legacy.mo (OSError)"]


def test_splits_are_disjoint_deterministic_and_cached(tmp_path):
    root = locale_tree(tmp_path)
    first = build_catalog_pairs(tmp_path / "cache", n_test=5, n_val=4, locale_dir=root)
    rows = {name: (getattr(first, name)).read_text(encoding="utf-8").splitlines() for name in ("train", "val", "test")}
    assert [len(rows[k]) for k in ("train", "val", "test")] == [22, 4, 5]
    sources = [json.loads(line)["source"] for k in rows for line in rows[k]]
    assert len(set(sources)) == 31  # every pair in exactly one split
    assert first.info()["pairs"] == {"train": 22, "val": 4, "test": 5}
    first.test.write_text("edited\n")  # a cache hit reads the files, it does not rebuild them
    again = build_catalog_pairs(tmp_path / "cache", n_test=5, n_val=4, locale_dir=root)
    assert again == first and again.test.read_text() == "edited\n"
    other = build_catalog_pairs(tmp_path / "other", n_test=5, n_val=4, locale_dir=root)
    assert other.train.read_text(encoding="utf-8").splitlines() == rows["train"]  # the same split elsewhere


def test_no_catalogs_or_too_few_pairs_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no gettext catalogs in .*install translated packages"):
        build_catalog_pairs(tmp_path / "cache", locale_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="only 31 usable catalog pairs"):
        build_catalog_pairs(tmp_path / "cache", n_test=30, n_val=5, locale_dir=locale_tree(tmp_path))


@pytest.mark.parametrize(
    "source, target, ok",
    [("Open file", "Datei öffnen", True), ("", "x", False), ("a", "a", False), ("a\nb", "c", False)],
)
def test_usable(source, target, ok):
    assert usable(source, target) is ok
