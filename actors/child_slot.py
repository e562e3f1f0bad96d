"""A stable address for a supervised child that may die and be replaced.

Sessions keep a ``ChildSlot`` for the TokenActor, the ContainerActor and the
pool, never the actor's ref itself. While the child is down (it died and
the supervisor has not started its replacement yet) a tell is held, in
order and bounded, and handed to the replacement when the supervisor
installs it; so a ``RemoveContainer`` told during a restart still removes
the container. A tell never raises: pykka's ``ActorDeadError`` stops here.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import pykka

log = logging.getLogger(__name__)

HELD_LIMIT = 10_000


class ChildSlot:
    def __init__(
        self, kind: str, ref: pykka.ActorRef[Any] | None = None, held_limit: int = HELD_LIMIT
    ) -> None:
        self.kind = kind
        self._ref = ref
        self._held: deque[Any] = deque(maxlen=held_limit)
        self._lock = threading.Lock()

    @property
    def ref(self) -> pykka.ActorRef[Any] | None:
        return self._ref

    def tell(self, message: Any) -> None:
        with self._lock:
            ref = self._ref
            if ref is None:
                self._hold(message)
                return
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            with self._lock:
                self._hold(message)

    def down(self) -> None:
        with self._lock:
            self._ref = None

    def install(self, ref: pykka.ActorRef[Any], first: tuple[Any, ...] = ()) -> None:
        """The replacement takes over: ``first`` messages, then everything held."""
        with self._lock:
            held, self._held = list(self._held), deque(maxlen=self._held.maxlen)
            self._ref = ref
            for message in (*first, *held):
                try:
                    ref.tell(message)
                except pykka.ActorDeadError:
                    self._ref = None
                    self._hold(message)

    def drain(self) -> list[Any]:
        """What is still held (at shutdown, when no replacement will come)."""
        with self._lock:
            held, self._held = list(self._held), deque(maxlen=self._held.maxlen)
            return held

    def _hold(self, message: Any) -> None:
        if len(self._held) == self._held.maxlen:
            log.warning(
                "the %s actor is down and %d messages wait for it: dropping the oldest",
                self.kind,
                len(self._held),
            )
        self._held.append(message)

    def __repr__(self) -> str:
        return f"ChildSlot({self.kind}, {'up' if self._ref is not None else 'down'})"
