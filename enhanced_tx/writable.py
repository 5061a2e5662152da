"""Where a command will write, checked before it does any work: one line when the path cannot be written.

Creating what is missing is part of the check (the command would create it next anyway); nothing that
exists is truncated or removed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from enhanced_tx.errors import ConfigError


def check_writable_folder(path: str | Path, key: str) -> Path:
    """`path` as a folder that exists and takes new files, or a ConfigError naming `key`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path} is a file, not a folder; pass a folder, e.g. {key}={path}_run")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as error:
        raise _refusal(key, path, error, "folder") from None
    return path


def check_writable_file(path: str | Path, key: str) -> Path:
    """`path` as a file that can be written (its folder created), or a ConfigError naming `key`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{key}={path} is a folder; pass a file path, e.g. {key}={path / 'results.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("a", encoding="utf-8"):  # opened to append: kept as it is until results come
                pass
        else:
            _probe(path.parent)
    except OSError as error:
        raise _refusal(key, path, error, "file") from None
    return path


def _probe(folder: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe."):
        pass


def _refusal(key: str, path: Path, error: OSError, kind: str) -> ConfigError:
    why = error.strerror or type(error).__name__
    where = f": {error.filename}" if error.filename and str(error.filename) != str(path) else ""
    return ConfigError(f"{key}={path} cannot be written ({why}{where}); pass a writable {kind}, {key}=PATH")
