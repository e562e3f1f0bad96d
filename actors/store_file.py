"""The store's file: its schema, and opening it without ever overwriting one.

A file that is not a Berth store, is corrupt, or was written by a newer
Berth is refused with ``StoreUnavailable``, one line naming the fix; nothing
in it is changed. Opening also writes once, so an unwritable file is refused
at start rather than at the first session.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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


class transaction:
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
