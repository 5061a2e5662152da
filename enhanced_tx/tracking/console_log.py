"""The console a user saw, kept in the run folder's log (`RunFolder.log`, run_train.log).

`keep_console(path)` copies everything printed to stdout/stderr into the log while it is active (a progress
bar keeps only its last state per line, without colours). `into_log_only(path)` sends what is printed only
to the log: chatty libraries (W&B's start and end banners) stay out of a sweep's console.
Logging records reach the same file through Hydra's file handler, which writes to the original streams.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Tee:
    """A text stream that writes to the console and, one finished line at a time, to a log file."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self._console, self._log, self._pending = console, log, ""

    def write(self, text: str) -> int:
        self._console.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:  # a redrawn line (progress bar): what the console shows last
            self._log.write(_ANSI.sub("", line.rpartition("\r")[2]) + "\n")
        if lines:
            self._log.flush()
        return len(text)

    def end_line(self) -> None:
        """An unfinished last line still belongs in the log (the console keeps it as it is)."""
        if self._pending:
            self._log.write(_ANSI.sub("", self._pending.rpartition("\r")[2]) + "\n")
            self._pending = ""

    def flush(self) -> None:
        self._console.flush()
        self._log.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's
        return getattr(self._console, name)


@contextlib.contextmanager
def keep_console(path: str | Path) -> Iterator[None]:
    """Copy stdout and stderr into `path` (appended) until the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        try:
            yield
        finally:
            for tee in (sys.stdout, sys.stderr):
                if isinstance(tee, _Tee):
                    tee.end_line()
            sys.stdout, sys.stderr = out, err


@contextlib.contextmanager
def into_log_only(path: str | Path) -> Iterator[None]:
    """Send stdout and stderr only to `path` (appended) until the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield
