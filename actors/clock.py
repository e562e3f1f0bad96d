"""Time sources: the real clocks, and a manual clock for tests.

Every duration in Berth is measured against a ``Clock`` so that tests can move
time forward instead of sleeping (the model is Trio's MockClock). ``now`` is
monotonic and measures durations; ``wall`` stamps records people read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

#: Delivers every timer due up to a clock time, moving the clock with the
#: second argument as it goes, and settling the tree after each delivery
#: when the third is true (see ``ManualClock.advance``).
TimerDriver = Callable[[float, Callable[[float], None], bool], None]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps."""
        ...

    def wait_timeout(self, deadline: float) -> float | None:
        """How long a real thread should wait for ``deadline``; None = until woken."""
        ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Ask to be called whenever time jumps (manual clocks only)."""
        ...

    def drive(self, driver: TimerDriver) -> None:
        """Register the timer service that ``advance`` must run (manual clocks only)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def wait_timeout(self, deadline: float) -> float | None:
        return max(0.0, deadline - time.monotonic())

    def on_change(self, callback: Callable[[], None]) -> None:
        """Real time never jumps."""

    def drive(self, driver: TimerDriver) -> None:
        """Real time needs no driver: the timer thread waits for it."""


class ManualClock:
    """Time moves only when a test calls ``advance``.

    ``advance`` moves time to each due deadline in turn and has the timer
    service deliver what is due there (and, in a running tree, wait until
    every actor has handled it) before it moves on; when it returns, every
    consequence of the time that passed has happened. So a timer that fires
    a second early is seen to fire a second early.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._offset = wall_start - start
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._drivers: list[TimerDriver] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> float:
        with self._lock:
            return self._now + self._offset

    def wait_timeout(self, deadline: float) -> float | None:
        return None

    def on_change(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def drive(self, driver: TimerDriver) -> None:
        with self._lock:
            self._drivers.append(driver)

    def jump_to(self, when: float) -> None:
        """Set the time (the timer service's step inside ``advance``); never backwards."""
        with self._lock:
            self._now = max(self._now, when)

    def advance(self, seconds: float, settle: bool = True) -> None:
        """Move time on; ``settle=False`` only queues the firings (for a test that
        holds an actor on purpose and so cannot wait for it)."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            target = self._now + seconds
            drivers = list(self._drivers)
        for driver in drivers:
            driver(target, self.jump_to, settle)
        self.jump_to(target)
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()
