"""Time sources: the real monotonic clock, and a manual clock for tests.

Every duration in Berth is measured against a ``Clock`` so that tests can move
time forward instead of sleeping (the model is Trio's MockClock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wait_timeout(self, deadline: float) -> float | None:
        """How long a real thread should wait for ``deadline``; None = until woken."""
        ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Ask to be called whenever time jumps (manual clocks only)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wait_timeout(self, deadline: float) -> float | None:
        return max(0.0, deadline - time.monotonic())

    def on_change(self, callback: Callable[[], None]) -> None:
        """Real time never jumps."""


class ManualClock:
    """Time moves only when a test calls ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def wait_timeout(self, deadline: float) -> float | None:
        return None

    def on_change(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            self._now += seconds
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()
