"""What the API keeps about a session that Berth's session core has no field for.

Metadata, the archive time, the agent and environment it was created with:
kept here, keyed by the Berth session id, and written through to the API's
store (``api_store``) when sessions are stored, so they outlive a restart.
The title is the session's Berth ``name``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from transport.v1.api_store import ApiStore

METADATA_PAIRS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512


@dataclass(frozen=True)
class SessionRecord:
    agent_id: str
    environment_id: str
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    archived_at: float | None = None
    updated_at: float = field(default_factory=time.time)


class Records:
    def __init__(self, store: ApiStore | None = None) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._records: dict[str, SessionRecord] = {}
        if store is not None:
            for sid, body in store.records().items():
                self._records[sid] = SessionRecord(**body)

    def get(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            return self._records.get(session_id)

    def put(self, session_id: str, record: SessionRecord) -> None:
        with self._lock:
            self._records[session_id] = record
            self._write(session_id, record)

    def change(self, session_id: str, fallback: SessionRecord, **changes: Any) -> SessionRecord:
        with self._lock:
            record = replace(self._records.get(session_id, fallback), updated_at=time.time(), **changes)
            self._records[session_id] = record
            self._write(session_id, record)
            return record

    def drop(self, session_id: str) -> None:
        """Forget the record and, on disk, the events the API recorded for it."""
        with self._lock:
            self._records.pop(session_id, None)
            if self._store is not None:
                self._store.drop(session_id)

    def _write(self, session_id: str, record: SessionRecord) -> None:
        if self._store is not None:
            self._store.put_record(session_id, asdict(record))

    def known(self) -> list[str]:
        with self._lock:
            return list(self._records)


def metadata_problem(metadata: dict[str, str | None]) -> str | None:
    """Why a metadata bag breaks the reference's limits, or None."""
    if len(metadata) > METADATA_PAIRS:
        return f"metadata holds at most {METADATA_PAIRS} pairs"
    for key, value in metadata.items():
        if not key or len(key) > METADATA_KEY_CHARS:
            return f"metadata keys are 1-{METADATA_KEY_CHARS} characters (got {key[:80]!r})"
        if value is not None and len(value) > METADATA_VALUE_CHARS:
            return f"metadata values are at most {METADATA_VALUE_CHARS} characters (key {key!r})"
    return None
