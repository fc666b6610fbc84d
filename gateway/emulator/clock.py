"""Time as an injectable value: the emulator never reads the wall clock directly.

Tests move a `FakeClock` forward to expire tokens, nonces and grace periods without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time as epoch seconds."""


def system_clock() -> float:
    return time.time()


class FakeClock:
    """A settable clock for tests; thread-safe because the server reads it from its own thread."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now
