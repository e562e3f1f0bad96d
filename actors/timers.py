"""Timers as messages: one scanner thread delivers a message to an actor later.

pykka has no timers. ``TimerService`` is a single thread with a heap of
deadlines (the Dramatiq deadline-scanner shape) shared by every actor. It only
*delivers* messages; deciding whether a firing still counts is the owning
actor's job, done by ``ActorTimers``: each timer has a name and a generation,
and a ``TimerFired`` whose generation is no longer current (the timer was
cancelled or replaced after the firing was queued) is dropped. A stopped actor
cancels all of its timers; a firing addressed to a dead actor is discarded.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.clock import Clock, SystemClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimerFired:
    """Delivered to the owner when timer ``name`` of ``generation`` expires."""

    name: str
    generation: int
    message: Any


@dataclass(eq=False)
class TimerHandle:
    deadline: float
    target: pykka.ActorRef[Any]
    message: Any
    cancelled: bool = field(default=False)


class TimerService:
    """Delivers messages to actors at deadlines measured on ``clock``.

    Stop it with ``stop()``: pending timers are dropped and the thread exits.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        #: Called after each delivery inside ``ManualClock.advance`` (a tree's settle barrier).
        self.settle_hook: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="berth-timers", daemon=True)
        self.clock.on_change(self._wake)
        self.clock.drive(self._deliver_until)
        self._thread.start()

    def schedule(self, target: pykka.ActorRef[Any], delay: float, message: Any) -> TimerHandle:
        handle = TimerHandle(self.clock.now() + max(0.0, delay), target, message)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the timer service is stopped")
            heapq.heappush(self._heap, (handle.deadline, next(self._seq), handle))
            self._cond.notify()
        return handle

    def cancel(self, handle: TimerHandle) -> None:
        with self._cond:
            handle.cancelled = True

    def pending(self) -> int:
        """Timers not yet fired nor cancelled (the leak check uses this)."""
        with self._cond:
            return sum(1 for _, _, h in self._heap if not h.cancelled)

    def due(self) -> int:
        """Timers whose deadline has passed but that are not delivered yet."""
        now = self.clock.now()
        with self._cond:
            return sum(1 for deadline, _, h in self._heap if deadline <= now and not h.cancelled)

    def _deliver_until(self, target: float, jump_to: Callable[[float], None], settle: bool) -> None:
        """Deliver, in deadline order, every timer due by ``target``, settling after each."""
        while True:
            with self._cond:
                live = [entry for entry in self._heap if not entry[2].cancelled and entry[0] <= target]
                if not live:
                    return
                deadline = min(entry[0] for entry in live)
                batch = [entry for entry in live if entry[0] == deadline]
                for entry in batch:
                    entry[2].cancelled = True  # delivered: the scanner must not deliver it again
            jump_to(deadline)
            for _, _, handle in sorted(batch, key=lambda entry: entry[1]):
                try:
                    handle.target.tell(handle.message)
                except pykka.ActorDeadError:
                    log.debug("timer for a stopped actor dropped: %r", handle.message)
            if settle and self.settle_hook is not None:
                self.settle_hook()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._pop_due()
                if not due:
                    if self._stopped:
                        return
                    timeout = self.clock.wait_timeout(self._heap[0][0]) if self._heap else None
                    self._cond.wait(timeout)
                    continue
            for handle in due:
                try:
                    handle.target.tell(handle.message)
                except pykka.ActorDeadError:
                    log.debug("timer for a stopped actor dropped: %r", handle.message)

    def _pop_due(self) -> list[TimerHandle]:
        now = self.clock.now()
        due = []
        while self._heap and (self._heap[0][0] <= now or self._heap[0][2].cancelled):
            _, _, handle = heapq.heappop(self._heap)
            if not handle.cancelled:
                due.append(handle)
        return due


class ActorTimers:
    """The named timers of one actor; only that actor's thread uses it."""

    def __init__(self, service: TimerService, owner: pykka.ActorRef[Any]) -> None:
        self._service = service
        self._owner = owner
        self._generation = itertools.count(1)
        self._live: dict[str, tuple[int, TimerHandle]] = {}

    def start(self, name: str, delay: float, message: Any) -> None:
        """Arm ``name`` (replacing an armed timer of the same name)."""
        self.cancel(name)
        generation = next(self._generation)
        fired = TimerFired(name, generation, message)
        self._live[name] = (generation, self._service.schedule(self._owner, delay, fired))

    def cancel(self, name: str) -> None:
        entry = self._live.pop(name, None)
        if entry is not None:
            self._service.cancel(entry[1])

    def cancel_all(self) -> None:
        for name in list(self._live):
            self.cancel(name)

    def accept(self, fired: TimerFired) -> Any | None:
        """The message of a firing that still counts, or None for a stale one."""
        entry = self._live.get(fired.name)
        if entry is None or entry[0] != fired.generation:
            return None
        del self._live[fired.name]
        return fired.message

    def armed(self) -> frozenset[str]:
        return frozenset(self._live)
