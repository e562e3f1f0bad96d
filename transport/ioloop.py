"""One thread that drives every WebSocket of the server: epoll and timers.

A thread per connection costs memory and, woken to poll, CPU even when the
connection is idle; ``select.select`` also fails for descriptors >= 1024.
Here one thread waits in ``selectors`` (epoll on Linux) for every
non-blocking socket and for the earliest timer, and sleeps for as long as
nothing happens. Other threads never touch the selector: they hand work to
the loop with ``call_soon``, which wakes it through a socketpair.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What the loop calls for a registered socket (on the loop's thread)."""

    def on_readable(self) -> None: ...

    def on_writable(self) -> None: ...


class Timer:
    """A pending call; ``cancel`` is cheap (the heap entry is skipped later)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class IOLoop:
    def __init__(self, name: str = "berth-ioloop") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], None]] = deque()
        self._woken = False
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._stopping = False
        #: Times the loop woke up (tests check that idle connections cost none).
        self.wakeups = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    # ------------------------------------------------------------ from any thread

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop's thread; wakes the loop at most once per batch."""
        with self._lock:
            self._calls.append(callback)
            if self._woken or threading.current_thread() is self._thread:
                return  # the loop runs its calls before it waits again
            self._woken = True
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the pipe is full (it is being woken anyway) or closed
            pass

    def stop(self, timeout: float = 5.0) -> None:
        def halt() -> None:
            self._stopping = True

        self.call_soon(halt)
        if self._thread.is_alive() and not self.in_loop():
            self._thread.join(timeout)
        self._close()

    # ------------------------------------------------------------ loop thread only

    def register(self, sock: socket.socket, handler: Handler, write: bool = False) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        self._selector.register(sock, events, handler)

    def want_write(self, sock: socket.socket, handler: Handler, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        try:
            self._selector.modify(sock, events, handler)
        except (KeyError, ValueError, OSError):  # already unregistered or closed
            pass

    def unregister(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def registered(self) -> int:
        return len(self._selector.get_map()) - 1

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        while not self._stopping:
            timeout = self._next_timeout()
            try:
                ready = self._selector.select(timeout)
            except OSError:
                log.exception("the I/O loop's selector failed")
                return
            self.wakeups += 1
            for key, mask in ready:
                handler = key.data
                if handler is None:
                    self._drain_wake()
                    continue
                self._dispatch(handler, mask)
            self._run_calls()
            self._run_timers()

    def _dispatch(self, handler: Handler, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                handler.on_writable()
            if mask & selectors.EVENT_READ:
                handler.on_readable()
        except Exception:
            log.exception("a connection handler failed")

    def _next_timeout(self) -> float | None:
        if self._calls:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, deque()
            self._woken = False
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("a call on the I/O loop failed")

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _when, _n, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            try:
                timer.callback()
            except Exception:
                log.exception("a timer on the I/O loop failed")

    def _close(self) -> None:
        if self._thread.is_alive():
            return
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()
