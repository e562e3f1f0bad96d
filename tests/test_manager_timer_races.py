"""Every manager timer against every command that cancels it, in the actor tree.

The manager's actor is held (a subscriber's snapshot blocks its thread) while
the command and then the timer's firing queue up behind it, so the firing
reaches the mailbox after the cancellation, as for the eviction timer
(``tests/test_session_lifecycle.py``). Nothing may follow: no message to the
agent, no event queued, nothing recorded. A control run without the command
shows each firing does take effect when nothing cancels it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from actors import messages as m
from actors.api import Berth, BerthError
from actors.clock import ManualClock
from actors.manager_events import PauseManager
from actors.messages import Subscribe
from tests.agent_double import say
from tests.fake_link import FakeLink
from tests.stub_runtime import StubRuntime
from tests.test_manager_sessions import info, ready_child, ready_manager
from tests.waiting import wait_until
from transport import protocol as p

Setup = Callable[[Berth, StubRuntime, ManualClock], tuple[str, FakeLink, str]]


def nudge_armed(berth: Berth, runtime: StubRuntime, clock: ManualClock) -> tuple[str, FakeLink, str]:
    sid, link = ready_manager(berth, runtime)
    return sid, link, "manager-continue"


def batch_armed(berth: Berth, runtime: StubRuntime, clock: ManualClock) -> tuple[str, FakeLink, str]:
    sid, link = ready_manager(berth, runtime)
    ready_child(berth, runtime, sid, "alpha")  # its ready event waits for the batch delay
    berth.settle()
    return sid, link, "manager-batch"


def stale_armed(berth: Berth, runtime: StubRuntime, clock: ManualClock) -> tuple[str, FakeLink, str]:
    sid, link = ready_manager(berth, runtime)
    cid, child_link = ready_child(berth, runtime, sid, "alpha")
    berth.settle()
    clock.advance(2)  # the ready event is delivered
    say(berth, sid, link, p.Result(result="ok"))
    berth.send_message(cid, "work")
    say(berth, cid, child_link, p.StatusUpdate(status="running"))  # a child at work: watched, no nudge
    berth.settle()
    return sid, link, f"manager-stale:{cid}"


def resume_armed(berth: Berth, runtime: StubRuntime, clock: ManualClock) -> tuple[str, FakeLink, str]:
    sid, link = ready_manager(berth, runtime)
    berth.pause_manager(sid, resume_at=clock.wall() + 100)
    return sid, link, "manager-resume"


SETUPS: dict[str, Setup] = {
    "continue": nudge_armed,
    "batch": batch_armed,
    "stale": stale_armed,
    "resume": resume_armed,
}


def command(message: Any) -> Callable[[Berth, Any, str], None]:
    def tell(berth: Berth, ref: Any, sid: str) -> None:
        ref.tell(m.Command(message, lambda outcome: None))

    return tell


ENDINGS: dict[str, Callable[[Berth, Any, str], None]] = {
    "delete": lambda berth, ref, sid: berth.delete_session(sid),
    "terminate": lambda berth, ref, sid: berth.terminate_session(sid),
    "pause": command(PauseManager(None)),
    "interrupt": command(m.InterruptTurn()),
}

#: The cases the issue names: delete, terminate, interrupt and pause cancel every
#: manager timer, except that an interrupt leaves a pause's resume-at alone.
CASES = [
    (timer, ending) for timer in SETUPS for ending in ENDINGS if (timer, ending) != ("resume", "interrupt")
]


def fire_behind(berth: Berth, clock: ManualClock, sid: str, queue: Callable[[Any], None]) -> Any:
    """Hold the manager, queue ``queue``'s message and then every firing behind it; release."""
    ref = berth.lookup(sid).ref
    assert ref is not None
    release = threading.Event()

    def blocking_sink(event: Any) -> None:
        release.wait(timeout=10)

    ref.tell(Subscribe(blocking_sink))  # the snapshot's delivery holds the manager's thread
    queue(ref)
    clock.advance(200, settle=False)  # the timer fires: its message queues behind the command
    wait_until(lambda: berth.timers.due() == 0, what="the firing to be queued")
    release.set()
    return ref


def queued(berth: Berth, sid: str) -> int:
    try:
        manager = info(berth, sid).manager
    except BerthError:  # deleted
        return 0
    return manager.pending_events if manager is not None else 0


def effects_after(
    berth: Berth, sid: str, link: FakeLink, before: tuple[int, int], seen: list[Any]
) -> list[str]:
    """What the firing did: messages to the agent, events queued, things recorded."""
    sent_before, queued_before = before
    done: list[str] = [
        f"sent {f.content[:40]!r}" for f in link.sent[sent_before:] if isinstance(f, p.UserMessage)
    ]
    for event in seen:
        if isinstance(event, p.MessageAdded) and event.session_id == sid:
            text = event.message.content
            if "STALE" in text or "resumed" in text or "Continue your manager loop" in text:
                done.append(f"recorded {text[:40]!r}")
    if queued(berth, sid) > queued_before:
        done.append(f"{queued(berth, sid) - queued_before} more events queued")
    return done


@pytest.mark.parametrize(("timer", "ending"), CASES)
def test_a_manager_timer_firing_queued_behind_a_cancelling_command_does_nothing(tree, timer, ending):
    runtime, clock = StubRuntime(), ManualClock()
    berth = tree(runtime=runtime, clock=clock, manager_child_stale=30)
    sid, link, name = SETUPS[timer](berth, runtime, clock)
    assert {t for t in berth.get_session(sid).timers if t.startswith("manager-")} == {name}
    seen: list[Any] = []
    berth.bus.subscribe(seen.append)
    before = len(link.sent), queued(berth, sid)
    ref = fire_behind(berth, clock, sid, lambda ref: ENDINGS[ending](berth, ref, sid))
    if ending == "delete":
        wait_until(lambda: not ref.is_alive(), what="the manager to stop")
    berth.settle()
    assert effects_after(berth, sid, link, before, seen) == []
    if ending == "delete":
        wait_until(lambda: runtime.by_session(sid) is None, what="the manager's container to be removed")


@pytest.mark.parametrize("timer", list(SETUPS))
def test_without_a_cancelling_command_the_same_firing_takes_effect(tree, timer):
    runtime, clock = StubRuntime(), ManualClock()
    berth = tree(runtime=runtime, clock=clock, manager_child_stale=30)
    sid, link, _ = SETUPS[timer](berth, runtime, clock)
    seen: list[Any] = []
    berth.bus.subscribe(seen.append)
    before = len(link.sent), queued(berth, sid)
    fire_behind(berth, clock, sid, lambda ref: None)
    berth.settle()
    assert effects_after(berth, sid, link, before, seen) != []
