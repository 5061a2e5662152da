"""SIGTERM / SIGINT become a request to checkpoint at the next step boundary and stop."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class TrainingInterrupted(Exception):
    """Raised after the interrupt checkpoint is safely on disk."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(
            f"{signal.Signals(signum).name} at step {step}: checkpoint saved"  # the entry point adds how to go on
        )
        self.signum = signum
        self.exit_code = 128 + signum


class PreemptionGuard:
    """Context manager that records the first SIGTERM/SIGINT instead of dying mid-step.

    A second SIGINT restores the default behaviour (KeyboardInterrupt), so a stuck run can still be killed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
