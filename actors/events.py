"""The event bus: every session's events, for host apps that watch them all.

Sessions publish on their own actor thread, so a subscriber callback must
return quickly (hand the event to a queue); one that raises is removed.
"""

from __future__ import annotations

import logging
import threading

from actors.messages import EventSink
from transport.protocol import AuthAlert, SessionEvent, Snapshot

log = logging.getLogger(__name__)


class EventBus:
    """Session events, and ``AuthAlert``s about the OAuth token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sinks: tuple[EventSink, ...] = ()

    def subscribe(self, sink: EventSink) -> None:
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def unsubscribe(self, sink: EventSink) -> None:
        with self._lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    def publish(self, event: SessionEvent | Snapshot | AuthAlert) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:
                log.exception("an event bus subscriber failed; it is removed")
                self.unsubscribe(sink)
