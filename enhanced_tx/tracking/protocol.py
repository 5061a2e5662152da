"""`Logger`: what the trainer and the entry points log through; `SilentLogger`: the one logger that drops
everything (ranks other than 0, which share rank 0's run folder, log nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Logger(Protocol):
    @property
    def run_id(self) -> str | None: ...

    def log(self, metrics: Mapping[str, Any], step: int) -> None: ...

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None: ...

    def summary(self, values: Mapping[str, Any]) -> None: ...


class SilentLogger:
    """Takes every call a logger gets and does nothing."""

    run_id = None

    def start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        pass

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        pass

    def summary(self, values: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass
