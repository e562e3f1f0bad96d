"""What the /v1/ API keeps of its own, on disk, so a restart shows what it showed before.

The session's events come back from its journal (the session store); what
only this API knows lives here: each session's record (metadata, archive
time, the agent and environment it was made with) and the events the API
itself accepted (interrupts, confirmations, metadata changes) with their
event keys. Writes are rare user actions, made on the request's thread and
committed before the request is answered (WAL, ``synchronous=NORMAL``), so
nothing here is on the relay path. A file that cannot be opened stops the
start with one line naming it; the file sits beside the session store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from actors.config import BerthConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (session_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recorded (
    session_id TEXT NOT NULL, key INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
);
"""


def api_store_path(config: BerthConfig) -> Path:
    return config.state_dir / f"sessions-api-{config.instance_id}.sqlite3"


class ApiStore:
    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ValueError(
                f"the sessions API store {path} cannot be used ({exc}): check the state dir's "
                "permissions and free space, or move the file away if it is not a Berth store"
            ) from None
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, config: BerthConfig) -> ApiStore | None:
        """None when sessions are not stored either (``session_store`` is not sqlite)."""
        return cls(api_store_path(config)) if config.session_store == "sqlite" else None

    def records(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT session_id, body FROM records").fetchall()
        return {sid: json.loads(body) for sid, body in rows}

    def recorded(self) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        with self._lock:
            rows = self._db.execute("SELECT session_id, key, body FROM recorded ORDER BY key").fetchall()
        out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for sid, key, body in rows:
            out.setdefault(sid, []).append((int(key), json.loads(body)))
        return out

    def put_record(self, session_id: str, body: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO records VALUES (?, ?)", (session_id, json.dumps(body)))

    def add_recorded(self, session_id: str, key: int, body: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO recorded VALUES (?, ?, ?)", (session_id, key, json.dumps(body)))

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM records WHERE session_id = ?", (session_id,))
            self._db.execute("DELETE FROM recorded WHERE session_id = ?", (session_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise OSError(f"the sessions API store {self._path} cannot be written: {exc}") from None
