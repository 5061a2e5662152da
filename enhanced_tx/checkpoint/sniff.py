"""What a file that is not a PyTorch checkpoint is, so errors name it instead of guessing."""

from __future__ import annotations

import json
from pathlib import Path

_ZIP = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE = b"\x80"  # torch.save's legacy format: a pickle (protocol 2 and later)
_PEEK = 64


def describe_non_torch_file(path: Path) -> str | None:
    """None for a file that may be a torch.save file; else what it is ("an empty file", "plain text ...")."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PEEK)
    except OSError:
        return None  # torch.load reports it with the OS error
    if head.startswith((_ZIP, _PICKLE)):
        return None
    if not head:
        return "an empty file"
    if _is_safetensors(path, head):
        return "a safetensors weights file (load it as weights: checkpoint=<that file> in generation)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not a PyTorch file (it starts with bytes {head[:8].hex(' ')})"
    first = " ".join(text.split())[:40]
    return f"plain text ({first!r}...), not a PyTorch file"


def _is_safetensors(path: Path, head: bytes) -> bool:
    """8-byte little-endian header length, then a JSON header."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    size = int.from_bytes(head[:8], "little")
    try:
        with open(path, "rb") as f:
            f.seek(8)
            json.loads(f.read(min(size, 1 << 20)))
    except (OSError, ValueError):
        return size < (1 << 27)  # a header we cut short: still safetensors-shaped
    return True
