"""The embedded session store: SQLite (WAL) in the state dir, written behind.

Callers (session actors, on the relay path) only put values on a queue; one
writer thread takes everything that arrived within ``flush_interval`` and
commits it as one transaction. Repeated saves of one session within a batch
collapse into the last one. So a kill -9 loses at most the writes of the last
batch window (plus the time one commit takes); ``docs/durability.md`` states
the promise and the fsync policy.

A session's agent token is never written: only its SHA-256 digest is kept
(``remember_token``), which is all verification needs; the codec leaves
every secret out of the state. A ``Secret`` reaching the encoder stops that
write with an error instead of being stored.

The file itself is ``actors.store_file``, the records and codec
``actors.store_records``, reading back ``actors.store_reader``.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from actors.secret import Secret
from actors.store_file import open_connection, transaction
from actors.store_reader import load_sessions
from actors.store_records import PlainCodec, StateCodec, StoredSession, enc_hook, token_digest
from transport.protocol import MessageAdded, SessionEvent, StreamTokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Save:
    state: Any
    at: float


@dataclass(frozen=True)
class _Token:
    session_id: str
    digest: str


@dataclass(frozen=True)
class _Forget:
    session_id: str


@dataclass(frozen=True)
class _Barrier:
    """Everything queued before it is committed when ``done`` runs."""

    done: Callable[[], None]
    #: Commit now rather than at the end of the batch window.
    urgent: bool = True


@dataclass(frozen=True)
class _Links:
    """Sessions' agent link positions to store: session id -> (epoch, received)."""

    received: dict[str, tuple[str, int]]


@dataclass(frozen=True)
class _FramesBegin:
    """A session starts applying agent frames; its ``_Links`` marker ends them."""

    session_id: str


_STOP = object()


class SqliteStore:
    """``SessionStore`` on SQLite; callers never wait for the disk."""

    def __init__(
        self,
        path: Path,
        *,
        flush_interval: float = 0.05,
        fsync: bool = False,
        retention: float = 7 * 24 * 3600.0,
        event_limit: int = 5000,
        codec: StateCodec | None = None,
        clock: Callable[[], float] = time.time,
        queue_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.path = path
        self._conn = open_connection(path, fsync)
        self._fsync = fsync
        self._interval = flush_interval
        self._retention = retention
        self._event_limit = event_limit
        self._codec: StateCodec = codec or PlainCodec()
        self._clock = clock
        #: Events written per session since its replay log was last trimmed.
        self._since_trim: dict[str, int] = {}
        self._encoder = msgspec.json.Encoder(enc_hook=enc_hook)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Bytes of event text queued but not committed; past ``queue_bytes`` a
        #: session waits for the writer (backpressure), so a stream faster than
        #: the disk cannot grow the server's memory without bound. Only a session
        #: over its share waits (``_must_wait``): one that floods cannot stall the rest.
        self._queue_bytes = queue_bytes
        self._queued = 0
        #: The same, per session (only sessions with bytes queued have an entry).
        self._queued_by: dict[str, int] = {}
        self._room = threading.Condition()
        #: Set by an urgent barrier or close: the writer stops waiting out its window.
        self._urgent = threading.Event()
        self._closed = False
        self._last_purge = 0.0
        self.write_errors = 0
        self.purge_expired()
        self._thread = threading.Thread(target=self._run, name="berth-store", daemon=True)
        self._thread.start()

    @property
    def codec(self) -> StateCodec:
        return self._codec

    # ------------------------------------------------------------ SessionStore

    def save_session(self, state: Any) -> None:
        self._queue.put(_Save(state, self._clock()))

    def append_event(self, session_id: str, event: SessionEvent) -> None:
        size = _text_size(event)
        with self._room:
            while self._must_wait(session_id, size):
                self._urgent.set()
                self._room.wait(0.5)
            self._queued += size
            self._queued_by[session_id] = self._queued_by.get(session_id, 0) + size
        self._queue.put((session_id, event))  # a bare tuple: the relay path's one cost here

    def queued_bytes(self) -> int:
        """Event text queued and not yet committed (what the bound applies to)."""
        with self._room:
            return self._queued

    def _must_wait(self, session_id: str, size: int) -> bool:
        """Whether a session must wait for the writer before it queues ``size`` more (lock held).

        Only when the queue is over its bound, and then only a session over its
        fair share of it (the bound split among the sessions with bytes queued):
        a session streaming faster than the disk waits for its own bytes, never
        another session behind them. One with nothing queued never waits, so a
        single event larger than the bound still goes through."""
        if self._closed or self._queued + size <= self._queue_bytes:
            return False
        own = self._queued_by.get(session_id, 0)
        return own > 0 and own + size > self._queue_bytes // len(self._queued_by)

    def forget(self, session_id: str) -> None:
        self._queue.put(_Forget(session_id))

    def remember_token(self, session_id: str, token: Secret) -> None:
        """Keep what verifying the session's agent needs: the token's digest, never the token."""
        self._queue.put(_Token(session_id, token_digest(token)))

    def close(self) -> None:
        """Commit everything queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._urgent.set()
        self._thread.join(timeout=30)
        self._conn.close()

    # ------------------------------------------------------------ durability

    def when_durable(self, callback: Callable[[], None], urgent: bool = True) -> None:
        """Run ``callback`` (on the writer thread) once all earlier writes are committed;
        ``urgent`` commits at once instead of at the end of the batch window."""
        self._queue.put(_Barrier(callback, urgent))
        if urgent:
            self._urgent.set()

    def begin_link_frames(self, session_id: str) -> None:
        """The session starts applying a read of agent frames (``note_link_received`` ends it)."""
        self._queue.put(_FramesBegin(session_id))

    def note_link_received(self, session_id: str, epoch: str, received: int) -> None:
        """The session applied the frames of agent process ``epoch`` up to ``received``.

        Queued behind those frames' events, and the writer never commits the
        events of frames without the position that ends them: after a crash the
        stored position names exactly the frames whose effects survived, so the
        agent's resend is neither applied twice nor lost (issue 9)."""
        self._queue.put(_Links({session_id: (epoch, received)}))

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is committed."""
        done = threading.Event()
        self.when_durable(done.set)
        return done.wait(timeout)

    # ------------------------------------------------------------ reading

    def load(self, session_id: str | None = None) -> list[StoredSession]:
        """Every stored session (or the one asked for) with its events; committed writes only."""
        return load_sessions(self.path, session_id)

    def purge_expired(self) -> int:
        """Remove ended sessions older than the retention; how many went."""
        now = self._clock()
        self._last_purge = now
        cutoff = now - self._retention
        with transaction(self._conn):
            gone = [
                sid
                for (sid,) in self._conn.execute(
                    "SELECT session_id FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?", (cutoff,)
                )
            ]
            for sid in gone:
                self._delete(sid)
        return len(gone)

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        pending: list[Any] = []
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch = [first]
            if first is not _STOP and not (isinstance(first, _Barrier) and first.urgent):
                # Sleep out the window rather than wake for every item put meanwhile
                # (each wake-up would take the GIL from the relay); urgent ones cut it short.
                self._urgent.wait(self._interval)
            self._urgent.clear()
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._close_open_frames(batch)
            stopping = any(item is _STOP for item in batch)
            pending.extend(item for item in batch if item is not _STOP)
            pending = self._commit(pending)

    def _close_open_frames(self, batch: list[Any]) -> None:
        """A session applying agent frames puts their events, then their position:
        wait (briefly) for the position of frames whose events this batch holds."""
        open_frames: set[str] = set()

        def note(item: Any) -> None:
            if type(item) is _FramesBegin:
                open_frames.add(item.session_id)
            elif type(item) is _Links:
                open_frames.difference_update(item.received)

        for item in batch:
            note(item)
        deadline = time.monotonic() + self._interval
        while open_frames:
            try:  # a session waiting for room in the queue cannot end them: do not wait long
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            batch.append(item)
            if item is _STOP:
                return
            note(item)

    def _commit(self, items: list[Any]) -> list[Any]:
        """Write ``items`` in one transaction; what could not be written is returned for a retry."""
        left = self._write(items)
        if not left:
            written: dict[str, int] = {}
            for item in items:
                if type(item) is tuple:
                    written[item[0]] = written.get(item[0], 0) + _text_size(item[1])
            with self._room:
                for sid, size in written.items():
                    own = self._queued_by.pop(sid, 0) - size
                    if own > 0:
                        self._queued_by[sid] = own
                self._queued = max(0, self._queued - sum(written.values()))
                self._room.notify_all()
        return left

    def _write(self, items: list[Any]) -> list[Any]:
        saves: dict[str, _Save] = {}
        barriers: list[_Barrier] = []
        links: dict[str, tuple[str, int]] = {}
        rows: list[tuple[str, int, bool, int, bytes]] = []
        runs: dict[str, list[SessionEvent]] = {}
        try:
            with transaction(self._conn):
                since_trim = self._since_trim
                for item in items:
                    if type(item) is tuple:  # an event (the common case, kept cheap)
                        sid, event = item
                        since_trim[sid] = since_trim.get(sid, 0) + 1
                        if type(event) is MessageAdded:
                            self._end_run(runs, sid, rows)
                            body = self._encode(event)
                            if body is not None:
                                rows.append((sid, event.seq, True, 1, body))
                        else:
                            runs.setdefault(sid, []).append(event)
                        continue
                    match item:
                        case _Save():
                            saves[self._codec.session_id(item.state)] = item
                        case _Token(session_id=sid, digest=digest):
                            self._conn.execute(
                                "INSERT OR REPLACE INTO tokens (session_id, digest) VALUES (?, ?)",
                                (sid, digest),
                            )
                        case _Forget(session_id=sid):
                            self._insert_events(runs, rows)
                            saves.pop(sid, None)
                            self._delete(sid)
                        case _Barrier():
                            barriers.append(item)
                        case _Links(received=positions):
                            links.update(positions)
                        case _FramesBegin():
                            pass
                self._insert_events(runs, rows)
                for sid, save in saves.items():
                    if self._codec.is_deleted(save.state):
                        self._delete(sid)
                    else:
                        self._write_session(sid, save)
                for sid, (epoch, position) in links.items():  # after the saves: a new row gets it too
                    self._conn.execute(
                        "UPDATE sessions SET link_epoch = ?, link_received = ? WHERE session_id = ?",
                        (epoch, position, sid),
                    )
            if self._clock() - self._last_purge > self._retention / 1000:
                self.purge_expired()
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.error("the session store %s could not commit (will retry): %s", self.path, exc)
            return [item for item in items if not isinstance(item, _Barrier)] + barriers
        for barrier in barriers:
            barrier.done()
        return []

    def _end_run(self, runs: dict[str, list[SessionEvent]], sid: str, rows: list[Any]) -> None:
        run = runs.pop(sid, None)
        if run:
            body = self._encode(run)
            if body is not None:
                rows.append((sid, run[-1].seq, False, len(run), body))

    def _insert_events(self, runs: dict[str, list[SessionEvent]], rows: list[Any]) -> None:
        """One statement for a batch's events, the events between messages one row each
        (the writer shares the GIL with the relay: few rows, few encoder calls)."""
        for sid in list(runs):
            self._end_run(runs, sid, rows)
        if rows:
            self._conn.executemany(
                "INSERT OR REPLACE INTO events (session_id, seq, is_message, count, body) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            rows.clear()

    def _encode(self, value: Any) -> bytes | None:
        """JSON of ``value``; None (and an error logged) for a value that must not be stored."""
        try:
            return self._encoder.encode(value)
        except (TypeError, NotImplementedError) as exc:
            self.write_errors += 1
            log.error("the session store refused a %s: %s", type(value).__name__, exc)
            return None

    def _write_session(self, sid: str, save: _Save) -> None:
        try:
            body = self._codec.encode(save.state)
        except (TypeError, NotImplementedError) as exc:
            self.write_errors += 1
            log.error("the session store refused session %s: %s", sid, exc)
            return
        ended_at = save.at if self._codec.is_ended(save.state) else None
        row = self._conn.execute("SELECT ended_at FROM sessions WHERE session_id = ?", (sid,)).fetchone()
        if row is not None and row[0] is not None and ended_at is not None:
            ended_at = row[0]
        self._conn.execute(
            "INSERT INTO sessions (session_id, state, ended_at, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET state = excluded.state, "
            "ended_at = excluded.ended_at, updated_at = excluded.updated_at",
            (sid, body, ended_at, save.at),
        )
        if self._since_trim.get(sid, 0) >= max(1, self._event_limit // 10):
            self._trim(sid)

    def _trim(self, sid: str) -> None:
        """Keep the last ``event_limit`` events for replay; history messages stay."""
        self._since_trim.pop(sid, None)
        row = self._conn.execute(
            "SELECT seq FROM (SELECT seq, sum(count) OVER (ORDER BY seq DESC) AS newer FROM events "
            "WHERE session_id = ?) WHERE newer > ? LIMIT 1",
            (sid, self._event_limit),
        ).fetchone()
        if row is None:
            return
        self._conn.execute(
            "DELETE FROM events WHERE session_id = ? AND seq <= ? AND NOT is_message", (sid, row[0])
        )
        self._conn.execute(
            "UPDATE sessions SET trimmed_through = max(trimmed_through, ?) WHERE session_id = ?",
            (row[0], sid),
        )

    def _delete(self, sid: str) -> None:
        self._conn.execute("DELETE FROM sessions WHERE session_id = ?", (sid,))
        self._conn.execute("DELETE FROM events WHERE session_id = ?", (sid,))
        self._conn.execute("DELETE FROM tokens WHERE session_id = ?", (sid,))


def _text_size(event: SessionEvent) -> int:
    """About what an event weighs in the queue: its text, plus a constant."""
    if type(event) is StreamTokens:
        return 100 + sum(len(token) for token in event.tokens)
    if type(event) is MessageAdded:
        return 100 + len(event.message.content)
    return 200
