"""A session's journal: numbered events, bounded history, and its subscribers.

Every event a session publishes gets the next sequence number and is kept in
a bounded log, so a subscriber that reconnects "since N" gets exactly the
events it missed; when N has already left the log it gets a full snapshot
instead (history is the source of truth, live events are its tail). The
journal belongs to one SessionActor and is used only on that actor's thread;
the numbers come from the session core, which owns the counter.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable

from actors.messages import EventSink
from transport.protocol import ChatMessage, SessionEvent, Snapshot

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, history_limit: int, log_limit: int, global_sinks: Iterable[EventSink] = ()) -> None:
        self.seq = 0
        self.history: deque[ChatMessage] = deque(maxlen=history_limit)
        self._log: deque[SessionEvent] = deque(maxlen=log_limit)
        self._sinks: list[EventSink] = []
        self._global = tuple(global_sinks)
        #: Event numbers (start, end] that no event has (skipped after a restart).
        self._gap = (0, 0)

    def restore(
        self, events: Iterable[SessionEvent], history: Iterable[ChatMessage], gap: tuple[int, int]
    ) -> None:
        """After a restart: the stored events and history; numbering goes on after ``gap``."""
        self._log.extend(events)
        self.history.extend(history)
        self._gap = gap
        self.seq = gap[1]

    def append(self, event: SessionEvent) -> None:
        """Log and deliver an event the session core numbered (``seq`` strictly increases)."""
        if event.seq <= self.seq:
            raise ValueError(f"event seq {event.seq} after {self.seq}: the journal only grows")
        self.seq = event.seq
        self._log.append(event)
        for sink in self._sinks:
            self._deliver(sink, event)
        for sink in self._global:
            self._deliver(sink, event)

    def subscribe(self, sink: EventSink, since: int | None, snapshot: Callable[[], Snapshot]) -> None:
        """Catch ``sink`` up (replay or snapshot), then add it for live events."""
        if since is not None and self._can_replay(since):
            for event in self._log:
                if event.seq > since:
                    self._deliver(sink, event)
        else:
            self._deliver(sink, snapshot())
        if sink not in self._sinks:
            self._sinks.append(sink)

    def kept(self) -> tuple[SessionEvent, ...]:
        return tuple(self._log)

    def unsubscribe(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def clear_subscribers(self) -> None:
        self._sinks.clear()

    def _can_replay(self, since: int) -> bool:
        if since > self.seq or since < 0:
            return False
        if self._gap[0] < since <= self._gap[1] and since != self.seq:
            return False  # the client saw events a crash lost: only a snapshot is true
        if since == self.seq:
            return True
        return bool(self._log) and self._log[0].seq <= since + 1

    def _deliver(self, sink: EventSink, event: SessionEvent | Snapshot) -> None:
        try:
            sink(event)
        except Exception:
            log.exception("an event subscriber failed; it is removed")
            self.unsubscribe(sink)
