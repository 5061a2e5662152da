"""A real translation task that ships on every Debian-like machine: gettext message catalogs.

Installed programs (coreutils, git, bash, dpkg, glibc, postgres, ...) ship their user-facing messages
translated by volunteer translators as compiled gettext catalogs, `/usr/share/locale/<lang>/LC_MESSAGES/*.mo`.
Each entry is an English message (`msgid`) and its human translation (`msgstr`): English -> German
software-message translation, written by neither us nor a generator. The catalogs are read with the
standard library's `gettext` parser, in sorted file order, so the pairs are a pure function of the
installed catalogs; the manifest records which files and how many pairs, to compare machines.

Kept: single-line messages translated to something different, 1-120 characters a side; the first
translation of each English message wins (sorted files). Split by a seeded shuffle into test, validation
and training pairs, written as JSONL (`{"source", "target"}`) for `data=pairs`.
"""

from __future__ import annotations

import gettext
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from enhanced_tx.data.cache import atomic_write, resolve_cache_dir
from enhanced_tx.data.errors import DataError

LOCALE_DIR = Path("/usr/share/locale")
MAX_CHARS = 120  # longer messages are mostly paragraphs of help text: keep short, sentence-like pairs
CONTEXT_SEPARATOR = "\x04"  # gettext stores "context\x04msgid" for messages with a msgctxt
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CatalogPairs:
    """Paths of the three JSONL splits and the manifest (built on first use, then read from the cache)."""

    train: Path
    val: Path
    test: Path
    manifest: Path

    def info(self) -> dict:
        return json.loads(self.manifest.read_text(encoding="utf-8"))


def catalog_files(lang: str, locale_dir: Path = LOCALE_DIR) -> list[Path]:
    return sorted((locale_dir / lang / "LC_MESSAGES").glob("*.mo"))


def read_catalog(path: Path) -> Iterator[tuple[str, str]]:
    """(English, translation) of one compiled catalog; plural entries give their singular form."""
    with open(path, "rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # noqa: SLF001 (the parser's only public view is lookups)
    for key, value in catalog.items():
        if isinstance(key, tuple):  # (msgid, plural index): keep the singular
            if key[1] != 0:
                continue
            key = key[0]
        yield key.split(CONTEXT_SEPARATOR, 1)[-1], value


def usable(source: str, target: str) -> bool:
    """A short, single-line message with a real translation (not a copy, not the catalog header)."""
    source, target = source.strip(), target.strip()
    return (
        0 < len(source) <= MAX_CHARS
        and 0 < len(target) <= MAX_CHARS
        and "\n" not in source
        and "\n" not in target
        and source != target
    )


def collect_pairs(files: Iterable[Path]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Unique (source, target) pairs in file order, the files read, and the files skipped as unreadable
    (a catalog in a legacy encoding, for example)."""
    seen: dict[str, str] = {}
    read, skipped = [], []
    for path in files:
        try:
            entries = list(read_catalog(path))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            skipped.append(f"{path.name} ({type(err).__name__})")
            continue
        read.append(path.name)
        for source, target in entries:
            if usable(source, target):
                seen.setdefault(source.strip(), target.strip())
    return list(seen.items()), read, skipped


def split_pairs(pairs: list[tuple[str, str]], n_test: int, n_val: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    if len(pairs) < n_test + n_val + 1:
        raise DataError(
            f"only {len(pairs)} usable catalog pairs, fewer than test {n_test} + validation {n_val} + 1; "
            "install more translated packages or pick another language"
        )
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    shuffled = [pairs[i] for i in order]
    return {"test": shuffled[:n_test], "val": shuffled[n_test : n_test + n_val], "train": shuffled[n_test + n_val :]}


def build_catalog_pairs(
    cache_dir: str | os.PathLike | None = None,
    lang: str = "de",
    n_test: int = 1000,
    n_val: int = 1000,
    seed: int = 0,
    locale_dir: Path = LOCALE_DIR,
) -> CatalogPairs:
    """English -> `lang` pairs from the installed catalogs, cached under `cache_dir/catalog-pairs/`.

    The cache folder is keyed by the catalogs' names and sizes, so installing a package rebuilds it."""
    files = catalog_files(lang, locale_dir)
    if not files:
        raise DataError(
            f"no gettext catalogs in {locale_dir / lang / 'LC_MESSAGES'}; install translated packages "
            "(apt-get install coreutils git ... with their locales) or pick another language"
        )
    key = hashlib.sha256(
        json.dumps([lang, n_test, n_val, seed, MAX_CHARS, [(f.name, f.stat().st_size) for f in files]]).encode()
    ).hexdigest()[:12]
    folder = resolve_cache_dir(cache_dir) / "catalog-pairs" / f"en-{lang}-{key}"
    out = CatalogPairs(*(folder / f"{name}.jsonl" for name in SPLITS), manifest=folder / "manifest.json")
    if out.manifest.is_file():
        return out
    pairs, read, skipped = collect_pairs(files)
    splits = split_pairs(pairs, n_test, n_val, seed)
    for name in SPLITS:
        lines = "".join(json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n" for s, t in splits[name])
        atomic_write(getattr(out, name), lambda tmp, text=lines: tmp.write_text(text, encoding="utf-8"))
    manifest = {
        "task": f"English -> {lang} software messages (gettext catalogs in {locale_dir})",
        "pairs": {name: len(splits[name]) for name in SPLITS},
        "catalogs_read": read,
        "catalogs_skipped": skipped,
        "seed": seed,
        "max_chars": MAX_CHARS,
    }
    atomic_write(out.manifest, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8"))
    return out
