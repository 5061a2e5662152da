"""Reading user data files, with one-line errors that name the config key and the fix."""

from __future__ import annotations

from pathlib import Path

from enhanced_tx.data.errors import DataError


def read_bytes(path: str | Path, key: str, example: str = "/abs/path.txt") -> bytes:
    """The file's bytes; `key` is the config key that named it (e.g. `data.path`)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{key}={path} does not exist; pass an existing file: {key}={example}")
    if p.is_dir():
        raise DataError(f"{key}={path} is a directory; pass a file: {key}={example}")
    data = p.read_bytes()
    if not data.strip():
        raise DataError(f"{key}={path} is empty; pass a file with text in it")
    return data


def decode_text(data: bytes, path: str | Path, key: str) -> str:
    """UTF-8 text (a BOM is dropped); binary or mis-encoded files are rejected with the byte offset."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{key}={path} looks binary (NUL byte at offset {nul}); pass a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{key}={path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8 IN > OUT"
        ) from None


def read_text(path: str | Path, key: str, example: str = "/abs/path.txt") -> str:
    return decode_text(read_bytes(path, key, example), path, key)
