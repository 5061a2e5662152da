"""Atomic writes: a file is replaced whole or not at all, durable before it becomes visible.

Temporary files are named `.<name>.<pid>.<random>.tmp` beside their target; `clean_stale_temporaries`
removes those whose writer process is gone (a SIGKILL during a write leaves one behind).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from enhanced_tx.errors import CheckpointError

_NO_LINKS = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS)
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$")


def atomic_link(source: Path, path: Path) -> None:
    """`path` becomes another name of `source` (a hard link: no second copy on disk), swapped in atomically;
    a copy where the file system has no hard links."""
    try:
        atomic_replace(path, lambda tmp: os.link(source, tmp))
    except CheckpointError as e:
        if not isinstance(e.__cause__, OSError) or e.__cause__.errno not in _NO_LINKS:
            raise
        atomic_replace(path, lambda tmp: shutil.copyfile(source, tmp))


def atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temp file next to ``path``, then swap it in; on failure ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # same folder, so os.replace is a rename on one filesystem; made here (not mkstemp) to keep the umask
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = _os_error_in(e)
        if cause is not None:
            raise CheckpointError(_write_error(path, cause)) from e
        raise
    _fsync_dir(path.parent)


def _os_error_in(error: BaseException) -> OSError | None:
    """The I/O error behind ``error``: torch.save re-raises a failed write as a RuntimeError from its
    cleanup (the OSError is its context), and safetensors reports one as text."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        if "No space left on device" in str(seen) or "os error 28" in str(seen):
            return OSError(errno.ENOSPC, "No space left on device")
        seen = seen.__cause__ or seen.__context__
    return None


def _write_error(path: Path, e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full while writing {path} ({e.strerror or e}); free space or point paths.output_dir "
            "at a larger disk (the previous file there is intact)"
        )
    return f"could not write {path} ({e.strerror or e}); check the folder is writable (previous file intact)"


def _fsync_file(path: Path) -> None:
    # data on disk before the rename makes it visible: a crash never leaves a half-written last.pt
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # makes the rename itself durable; directories cannot be opened like this on Windows
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove `.*.<pid>.<rand>.tmp` files in `directory` whose writer process no longer runs; returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
