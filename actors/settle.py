"""A barrier for tests: wait until every actor of the tree has nothing to do.

Each actor counts the messages it handles and answers ``Probe`` (an ask)
with that count and the length of its mailbox. The tree is settled when a
whole round of probes finds every mailbox empty, no timer due, and no actor
handled anything since the round before: then no message is in flight that
could make another. Work on threads outside the actors (the container worker
pool, transport threads) is not seen, which is why tests that settle inject
an inline executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.messages import Probe


def answer_probe(actor: pykka.Actor, handled: int) -> tuple[int, int]:
    inbox: Any = actor.actor_inbox
    return handled, int(inbox.qsize())


def settle(due_timers: Callable[[], int], timeout: float = 10.0) -> None:
    """Return once the tree is quiet; raise TimeoutError naming the busy actors."""
    deadline = time.monotonic() + timeout
    previous: dict[str, Any] | None = None
    while True:
        counts: dict[str, Any] = {}
        waiting: list[str] = []
        for ref in pykka.ActorRegistry.get_all():
            try:
                handled, queued = ref.ask(Probe(), timeout=max(0.01, deadline - time.monotonic()))
            except pykka.ActorDeadError:
                continue
            except pykka.Timeout:
                raise TimeoutError(f"{ref} did not answer within {timeout:g} s: it is blocked") from None
            counts[ref.actor_urn] = handled
            if queued:
                waiting.append(str(ref))
        if not waiting and due_timers() == 0 and counts == previous:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tree did not settle within {timeout:g} s (busy: {waiting or 'timers'})")
        previous = counts
