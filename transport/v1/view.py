"""The API's view of every session's journal: mapped events, kept for listing and resumption.

It subscribes to Berth's event bus, so it sees each session's journal events
in order on that session's actor thread, maps them (``mapping.EventMapper``)
and keeps the listed ones (at most ``sessions_api_event_limit`` per session,
the oldest dropped first). Streams subscribe here: under one lock they get
the events after their ``Last-Event-ID`` and then every new one, so none is
missed or sent twice. Sinks only append and put into bounded queues: they
never block a session.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.events import EventBus
from transport import protocol as p
from transport.v1.api_store import ApiStore
from transport.v1.ids import event_id
from transport.v1.mapping import Blocker, Body, EventMapper, Listed, Preview

JOURNAL_EVENTS = (
    p.SessionUpdate,
    p.MessageAdded,
    p.StreamTokens,
    p.ApprovalRequested,
    p.QuestionAsked,
    p.TurnResult,
    p.ModelsAvailable,
)


class StreamEnded(Exception):
    """The stream is over: the server stops, the session is gone, or the client fell behind.

    ``error`` is True when the client should hear why (an SSE ``error`` event).
    """

    def __init__(self, why: str, error: bool) -> None:
        super().__init__(why)
        self.why, self.error = why, error


@dataclass(eq=False)
class EventQueue:
    """One stream's subscription: a bounded queue the session side never waits on."""

    session_id: str
    deltas: bool
    limit: int
    _items: queue.SimpleQueue[Body | None] = field(default_factory=queue.SimpleQueue)
    ended: bool = False
    why: str = ""
    error: bool = False

    def put(self, body: Body) -> None:
        if self.ended:
            return
        if self._items.qsize() >= self.limit:
            self.end("the client fell too far behind; reconnect with Last-Event-ID to catch up", error=True)
            return
        self._items.put(body)

    def end(self, why: str, error: bool = False) -> None:
        if not self.ended:
            self.ended, self.why, self.error = True, why, error
            self._items.put(None)

    def get(self, timeout: float) -> Body | None:
        """The next event; None when none came in ``timeout``; StreamEnded when it is over."""
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            raise StreamEnded(self.why, self.error)
        return item


@dataclass
class _SessionLog:
    mapper: EventMapper = field(default_factory=EventMapper)
    keys: list[int] = field(default_factory=list)
    events: list[Body] = field(default_factory=list)
    streams: set[EventQueue] = field(default_factory=set)


class SessionsView:
    def __init__(self, event_limit: int, store: ApiStore | None = None) -> None:
        self._limit = event_limit
        self._lock = threading.Lock()
        self._logs: dict[str, _SessionLog] = {}
        self._store = store
        #: Sessions whose log shows them ended: the only ones ``forget_ended`` looks at.
        self._ended: set[str] = set()
        #: Per session, the events the API recorded itself before a restart (merged by ``rebuild``).
        self._recorded = store.recorded() if store is not None else {}
        self._bus: EventBus | None = None
        self._exists: Callable[[str], bool] = lambda _sid: True

    def start(self, bus: EventBus, exists: Callable[[str], bool]) -> None:
        """Follow ``bus``; ``exists`` tells whether Berth still has a session (a non-blocking read)."""
        self._bus, self._exists = bus, exists
        bus.subscribe(self.on_event)

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.unsubscribe(self.on_event)
        with self._lock:
            streams = [s for log in self._logs.values() for s in log.streams]
        for stream in streams:
            stream.end("the server is shutting down; reconnect with Last-Event-ID", error=True)

    # ------------------------------------------------------------ journal in

    def on_event(self, event: Any) -> None:
        """A bus sink: runs on the publishing session's thread, so it only maps and queues."""
        if not isinstance(event, JOURNAL_EVENTS):
            return
        with self._lock:
            log = self._logs.get(event.session_id)
            if log is None:
                self._forget_ended_locked()
                log = self._logs[event.session_id] = _SessionLog()
            for item in log.mapper.feed(event):
                self._deliver(log, item)
            self._note_if_ended(event.session_id, log)

    def _note_if_ended(self, session_id: str, log: _SessionLog) -> None:
        info = log.mapper.info
        if info is not None and info.status.is_final:
            self._ended.add(session_id)

    def rebuild(self, session_id: str, events: tuple[Any, ...]) -> None:
        """Map a session's kept journal anew (after a restart the view starts empty).

        Runs on the session's thread (``Berth.replay_kept``), so the journal is
        whole up to now: what the bus fed in the meantime is replaced, not repeated.
        """
        fresh = _SessionLog()
        listed: list[tuple[int, Body]] = []
        with self._lock:
            old = self._logs.get(session_id)
            if old is not None:
                fresh.streams = old.streams
            self._logs[session_id] = fresh
            for event in events:
                if isinstance(event, JOURNAL_EVENTS):
                    listed += [(i.key, i.body) for i in fresh.mapper.feed(event) if isinstance(i, Listed)]
            recorded = self._recorded.pop(session_id, [])
            merged = sorted({key: body for key, body in [*listed, *recorded]}.items())[-self._limit :]
            fresh.keys = [key for key, _ in merged]
            fresh.events = [body for _, body in merged]
            if merged:
                fresh.mapper.last_key = max(fresh.mapper.last_key, merged[-1][0])
            self._note_if_ended(session_id, fresh)

    def forget_ended(self) -> None:
        """Drop the logs of sessions that ended and are gone (evicted or deleted elsewhere).

        A session that has not ended is kept even when Berth does not list it
        yet: a new session publishes its first events before the directory has it.
        """
        with self._lock:
            self._forget_ended_locked()

    def _forget_ended_locked(self) -> None:
        """Looks only at sessions that ended: a scan of every log here made each
        create cost O(sessions) (7 ms at 4,000 sessions)."""
        for sid in list(self._ended):
            log = self._logs.get(sid)
            if log is None:
                self._ended.discard(sid)
            elif not log.streams and not self._exists(sid):
                del self._logs[sid]
                self._ended.discard(sid)

    def record(self, session_id: str, body: Body) -> Body:
        """Add an event the API accepted itself (interrupt, confirmation, update); returns it."""
        with self._lock:
            log = self._logs.setdefault(session_id, _SessionLog())
            listed = log.mapper.record(body)
            if self._store is not None:
                self._store.add_recorded(session_id, listed.key, listed.body)
            self._deliver(log, listed)
            return listed.body

    def _deliver(self, log: _SessionLog, item: Listed | Preview) -> None:
        if isinstance(item, Listed):
            log.keys.append(item.key)
            log.events.append(item.body)
            if len(log.keys) > self._limit:
                del log.keys[0], log.events[0]
            for stream in log.streams:
                stream.put(item.body)
        else:
            for stream in log.streams:
                if stream.deltas:
                    stream.put(item.body)

    # ------------------------------------------------------------ reads

    def events(
        self, session_id: str, keep: Callable[[Body], bool] | None = None
    ) -> tuple[list[int], list[Body]]:
        """Keys and events of a session, oldest first (a copy)."""
        with self._lock:
            log = self._logs.get(session_id)
            if log is None:
                return [], []
            if keep is None:
                return list(log.keys), list(log.events)
            pairs = [(k, e) for k, e in zip(log.keys, log.events, strict=True) if keep(e)]
        return [k for k, _ in pairs], [e for _, e in pairs]

    def latest(self, session_id: str, event_type: str) -> Body | None:
        with self._lock:
            log = self._logs.get(session_id)
            for body in reversed(log.events if log else []):
                if body["type"] == event_type:
                    return body
        return None

    def blocker(self, session_id: str, blocking_id: str) -> Blocker | None:
        with self._lock:
            log = self._logs.get(session_id)
            return log.mapper.blockers.get(blocking_id) if log else None

    def resolve(self, session_id: str, blocking_id: str) -> None:
        with self._lock:
            log = self._logs.get(session_id)
            if log is not None:
                log.mapper.blockers.pop(blocking_id, None)

    # ------------------------------------------------------------ streams

    def subscribe(self, session_id: str, after: int | None, deltas: bool) -> EventQueue:
        """Events after key ``after`` (None: only new ones), then live; previews when ``deltas``."""
        stream = EventQueue(session_id, deltas, self._limit)
        with self._lock:
            log = self._logs.setdefault(session_id, _SessionLog())
            if after is not None:
                for body in log.events[bisect.bisect_right(log.keys, after) :]:
                    stream.put(body)
            if deltas:
                for preview in log.mapper.open_preview():
                    stream.put(preview.body)
            log.streams.add(stream)
        return stream

    def unsubscribe(self, stream: EventQueue) -> None:
        with self._lock:
            log = self._logs.get(stream.session_id)
            if log is not None:
                log.streams.discard(stream)

    def stream_count(self) -> int:
        with self._lock:
            return sum(len(log.streams) for log in self._logs.values())

    def drop(self, session_id: str, deleted: Body | None = None) -> None:
        """Forget a session; its streams get ``deleted`` (if given) and end."""
        with self._lock:
            log = self._logs.pop(session_id, None)
            self._ended.discard(session_id)
        for stream in log.streams if log else ():
            if deleted is not None:
                stream.put(deleted)
            stream.end("the session was deleted")

    def known(self) -> list[str]:
        with self._lock:
            return list(self._logs)

    def deleted_event(self, session_id: str, when: str) -> Body:
        with self._lock:
            log = self._logs.get(session_id)
            key = (log.mapper.last_key if log else 0) + 1
        return {"id": event_id(key), "type": "session.deleted", "processed_at": when}
