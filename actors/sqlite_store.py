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
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from actors.secret import Secret
from transport.protocol import ChatMessage, MessageAdded, SessionEvent, StreamTokens

log = logging.getLogger(__name__)

T = TypeVar("T")

#: "Bert" in ASCII: marks a file as a Berth store, so a foreign database is refused.
APPLICATION_ID = 0x42657274
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    ended_at REAL,
    updated_at REAL NOT NULL,
    trimmed_through INTEGER NOT NULL DEFAULT 0,
    link_received INTEGER NOT NULL DEFAULT 0,
    link_epoch TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions (ended_at);
CREATE TABLE IF NOT EXISTS tokens (session_id TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
-- A history message is one row; the other events of a batch between two messages
-- are one row (a JSON array, ``seq`` its last one, ``count`` how many).
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    is_message INTEGER NOT NULL,
    count INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""


class StoreUnavailable(ValueError):
    """The store file cannot be used; the message is one line naming the fix."""


@dataclass(frozen=True)
class StoredSession:
    """One session as the last committed batch left it."""

    session_id: str
    #: The state as JSON, without its token.
    state: bytes
    #: SHA-256 (hex) of the session token, for verifying a reconnecting agent.
    token_digest: str | None
    ended_at: float | None
    updated_at: float
    #: Its latest events in ``seq`` order, with no gap: the journal's replay log.
    events: tuple[SessionEvent, ...]
    #: Every history message it recorded, oldest first (kept beyond the replay log).
    history: tuple[ChatMessage, ...] = ()
    #: The highest agent link number whose frame's effects are stored, and its agent process.
    link_received: int = 0
    link_epoch: str = ""

    def decode(self, state_type: type[T]) -> T:
        return msgspec.json.decode(self.state, type=state_type)


def token_digest(token: Secret) -> str:
    return hashlib.sha256(token.reveal().encode()).hexdigest()


def digest_matches(given: str | None, digest: str) -> bool:
    """Constant-time check of a presented token against a stored digest."""
    if given is None:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), digest)


class StateCodec(Protocol):
    """What the store needs to know about the state values it keeps."""

    def session_id(self, state: Any) -> str: ...

    def is_ended(self, state: Any) -> bool: ...

    def is_deleted(self, state: Any) -> bool: ...

    def encode(self, state: Any) -> bytes:
        """JSON without any secret; raises TypeError rather than write one."""
        ...


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Secret):
        raise TypeError("a Secret reached the session store; it must be stripped before saving")
    raise NotImplementedError(f"the session store cannot encode {type(value).__name__}")


class PlainCodec:
    """For any dataclass or Struct with ``session_id`` (and optional ``token``, ``ended``, ``deleted``)."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)

    def session_id(self, state: Any) -> str:
        return str(state.session_id)

    def is_ended(self, state: Any) -> bool:
        return bool(getattr(state, "ended", False))

    def is_deleted(self, state: Any) -> bool:
        return bool(getattr(state, "deleted", False))

    def encode(self, state: Any) -> bytes:
        if getattr(state, "token", None) is not None:
            if dataclasses.is_dataclass(state) and not isinstance(state, type):
                state = dataclasses.replace(state, token=None)
            elif isinstance(state, msgspec.Struct):
                state = msgspec.structs.replace(state, token=None)
        return self._encoder.encode(state)


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


_STOP = object()


def open_connection(path: Path, fsync: bool) -> sqlite3.Connection:
    """Open (or create) the store; StoreUnavailable when it is not usable.

    Nothing is overwritten: a file that is not a Berth store, or that fails
    its integrity check, is refused as it is.
    """
    fix = "fix or move the file away (Berth changed nothing) and start again"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreUnavailable(f"the session store's directory cannot be created: {exc}") from None
    existed = path.exists()
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"the session store {path} cannot be opened: {exc}; {fix}") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            raise StoreUnavailable(f"the session store {path} is an SQLite file but not a Berth store; {fix}")
        if existed and tables:
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise StoreUnavailable(f"the session store {path} is corrupt ({check}); {fix}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the session store {path} was written by a newer Berth (schema {version}); "
                    "upgrade Berth or use another state dir"
                )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        conn.executescript(
            f"{_SCHEMA} PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION};"
        )
        # A real write now, so an unwritable file is refused at start, not at the first session.
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)", (time.time(),))
    except StoreUnavailable:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreUnavailable(f"the session store {path} is not usable: {exc}; {fix}") from None
    try:
        path.chmod(0o600)
    except OSError:
        pass
    return conn


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
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Bytes of event text queued but not committed; past ``queue_bytes`` a
        #: session waits for the writer (backpressure), so a stream faster than
        #: the disk cannot grow the server's memory without bound.
        self._queue_bytes = queue_bytes
        self._queued = 0
        self._room = threading.Condition()
        #: Agent link positions noted by sessions, and the ones last written.
        self._links: dict[str, tuple[str, int]] = {}
        self._links_written: dict[str, tuple[str, int]] = {}
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
        if self._queued + size > self._queue_bytes and not self._closed:
            with self._room:
                while self._queued > 0 and self._queued + size > self._queue_bytes and not self._closed:
                    self._urgent.set()
                    self._room.wait(0.5)
        with self._room:
            self._queued += size
        self._queue.put((session_id, event))  # a bare tuple: the relay path's one cost here

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

    def note_link_received(self, session_id: str, epoch: str, received: int) -> None:
        """The session applied the frames of agent process ``epoch`` up to ``received``.

        A plain dict write (called for every agent frame); the writer reads it
        before it drains the queue, so what it stores never runs ahead of the
        events those frames produced."""
        self._links[session_id] = (epoch, received)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is committed."""
        done = threading.Event()
        self.when_durable(done.set)
        return done.wait(timeout)

    # ------------------------------------------------------------ reading

    def load(self, session_id: str | None = None) -> list[StoredSession]:
        """Every stored session (or the one asked for) with its events; committed writes only."""
        decoder = msgspec.json.Decoder(SessionEvent)
        run_decoder = msgspec.json.Decoder(list[SessionEvent])
        reader = sqlite3.connect(self.path)
        where, args = ("WHERE s.session_id = ?", (session_id,)) if session_id is not None else ("", ())
        try:
            rows = reader.execute(
                "SELECT s.session_id, s.state, t.digest, s.ended_at, s.updated_at, s.trimmed_through, "
                "s.link_received, s.link_epoch "
                "FROM sessions s "
                f"LEFT JOIN tokens t ON t.session_id = s.session_id {where} ORDER BY s.rowid",
                args,
            ).fetchall()
            result = []
            for sid, state, digest, ended_at, updated_at, trimmed, link_received, link_epoch in rows:
                stored = reader.execute(
                    "SELECT is_message, body FROM events WHERE session_id = ? ORDER BY seq", (sid,)
                ).fetchall()
                decoded: list[SessionEvent] = []
                for is_message, body in stored:
                    if is_message:
                        decoded.append(decoder.decode(body))
                    else:
                        decoded.extend(run_decoder.decode(body))
                events = tuple(event for event in decoded if event.seq > trimmed)
                history = tuple(e.message for e in decoded if isinstance(e, MessageAdded))
                result.append(
                    StoredSession(
                        sid,
                        bytes(state),
                        digest,
                        ended_at,
                        updated_at,
                        events,
                        history,
                        link_received,
                        link_epoch,
                    )
                )
            return result
        finally:
            reader.close()

    def purge_expired(self) -> int:
        """Remove ended sessions older than the retention; how many went."""
        now = self._clock()
        self._last_purge = now
        cutoff = now - self._retention
        with _transaction(self._conn):
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
            links = dict(self._links)  # before the drain: see note_link_received
            changed = {sid: v for sid, v in links.items() if self._links_written.get(sid) != v}
            if changed:
                batch.append(_Links(changed))
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            pending.extend(item for item in batch if item is not _STOP)
            pending = self._commit(pending)

    def _commit(self, items: list[Any]) -> list[Any]:
        """Write ``items`` in one transaction; what could not be written is returned for a retry."""
        left = self._write(items)
        if not left:
            written = sum(_text_size(item[1]) for item in items if type(item) is tuple)
            with self._room:
                self._queued = max(0, self._queued - written)
                self._room.notify_all()
        return left

    def _write(self, items: list[Any]) -> list[Any]:
        saves: dict[str, _Save] = {}
        barriers: list[_Barrier] = []
        links: dict[str, tuple[str, int]] = {}
        rows: list[tuple[str, int, bool, int, bytes]] = []
        runs: dict[str, list[SessionEvent]] = {}
        try:
            with _transaction(self._conn):
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
                self._insert_events(runs, rows)
                for sid, (epoch, position) in links.items():
                    self._conn.execute(
                        "UPDATE sessions SET link_epoch = ?, link_received = ? WHERE session_id = ?",
                        (epoch, position, sid),
                    )
                    self._links_written[sid] = (epoch, position)
                for sid, save in saves.items():
                    if self._codec.is_deleted(save.state):
                        self._delete(sid)
                    else:
                        self._write_session(sid, save)
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
        self._links.pop(sid, None)
        self._links_written.pop(sid, None)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._conn.execute("ROLLBACK")
                raise
        self._conn.execute("ROLLBACK")


def _text_size(event: SessionEvent) -> int:
    """About what an event weighs in the queue: its text, plus a constant."""
    if type(event) is StreamTokens:
        return 100 + sum(len(token) for token in event.tokens)
    if type(event) is MessageAdded:
        return 100 + len(event.message.content)
    return 200
