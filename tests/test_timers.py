from __future__ import annotations

import queue
import threading
from typing import Any

import pykka

from actors.clock import ManualClock
from actors.timers import ActorTimers, TimerFired, TimerService
from tests.waiting import wait_until


class Recorder(pykka.ThreadingActor):
    def __init__(self, service: TimerService, seen: queue.SimpleQueue[Any]) -> None:
        super().__init__()
        self.service = service
        self.seen = seen

    def on_start(self) -> None:
        self.timers = ActorTimers(self.service, self.actor_ref)

    def on_stop(self) -> None:
        self.timers.cancel_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TimerFired):
            accepted = self.timers.accept(message)
            self.seen.put(("fired", message.name, accepted))
        elif message[0] == "start":
            self.timers.start(message[1], message[2], message[3])
        elif message[0] == "cancel":
            self.timers.cancel(message[1])
        elif message[0] == "block":
            message[1].wait(timeout=10)
        elif message[0] == "armed":
            return self.timers.armed()
        return None


def test_a_timer_delivers_its_message_when_the_clock_reaches_the_deadline():
    clock = ManualClock()
    service = TimerService(clock)
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ref = Recorder.start(service, seen)
    try:
        ref.ask(("start", "t", 5.0, "payload"))
        clock.advance(4.9)
        assert seen.empty()
        clock.advance(0.2)
        assert seen.get(timeout=5) == ("fired", "t", "payload")
    finally:
        ref.stop()
        service.stop()


def test_a_firing_that_reaches_the_mailbox_after_its_cancellation_is_dropped():
    clock = ManualClock()
    service = TimerService(clock)
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ref = Recorder.start(service, seen)
    release = threading.Event()
    try:
        ref.ask(("start", "t", 1.0, "payload"))
        ref.tell(("block", release))
        ref.tell(("cancel", "t"))
        clock.advance(2.0)  # fires while the cancel still waits in the mailbox
        wait_until(lambda: service.pending() == 0, what="the firing to be delivered")
        release.set()
        assert seen.get(timeout=5) == ("fired", "t", None)
        assert ref.ask(("armed",)) == frozenset()
    finally:
        release.set()
        ref.stop()
        service.stop()


def test_stopping_an_actor_cancels_all_of_its_timers():
    clock = ManualClock()
    service = TimerService(clock)
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ref = Recorder.start(service, seen)
    ref.ask(("start", "a", 1.0, "a"))
    ref.ask(("start", "b", 2.0, "b"))
    assert service.pending() == 2
    ref.stop()
    assert service.pending() == 0
    clock.advance(5)
    service.stop()
    assert seen.empty()


def test_replacing_a_timer_makes_the_old_generation_stale():
    clock = ManualClock()
    service = TimerService(clock)
    owner_ref: Any = None
    timers = ActorTimers(service, owner_ref)
    timers.start("x", 1.0, "old")
    old = TimerFired("x", 1, "old")
    timers.start("x", 1.0, "new")
    assert timers.accept(old) is None
    assert timers.accept(TimerFired("x", 2, "new")) == "new"
    assert timers.armed() == frozenset()
    service.stop()


def test_real_time_timers_fire_without_a_manual_clock():
    service = TimerService()
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ref = Recorder.start(service, seen)
    try:
        ref.ask(("start", "t", 0.01, "now"))
        assert seen.get(timeout=5) == ("fired", "t", "now")
        wait_until(lambda: service.pending() == 0, what="the heap to drain")
    finally:
        ref.stop()
        service.stop()
