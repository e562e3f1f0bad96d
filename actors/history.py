"""Ended sessions after their eviction: transcripts read from the store.

Eviction removes a session's actor and container, not its history: the store
keeps the session until it is deleted or ``ended_retention`` passes. The edges
read such a session here when the registry no longer has it (``GET
/api/sessions/<id>``, and the list with ``?ended=true``).
"""

from __future__ import annotations

from actors.messages import SessionView
from actors.sqlite_store import SqliteStore
from actors.state_codec import SessionStateCodec
from actors.store_records import StoredSession
from transport.protocol import SessionInfo


class EndedSessions:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def view(self, session_id: str) -> SessionView | None:
        """The stored view of an ended, evicted session (None if the store has none)."""
        self._store.flush()  # an eviction just now is in the store too
        found = self._store.load(session_id)
        return self._view(found[0]) if found else None

    def infos(self) -> list[SessionInfo]:
        """Every ended, evicted session in the store, oldest first."""
        self._store.flush()
        views = [self._view(item) for item in self._store.load()]
        return sorted((v.info for v in views if v is not None), key=lambda info: info.created_at)

    def forget(self, session_id: str) -> bool:
        """Delete a stored ended session; False if there is none."""
        if self.view(session_id) is None:
            return False
        self._store.forget(session_id)
        self._store.flush()
        return True

    def _view(self, item: StoredSession) -> SessionView | None:
        codec = self._store.codec
        if item.ended_at is None or not isinstance(codec, SessionStateCodec):
            return None
        state = codec.decode(item.state).state
        if not state.gone:
            return None  # still in the registry: the live path answers
        seq = max([state.seq, *(e.seq for e in item.events)])
        return SessionView(
            info=state.info, history=item.history, pending_approval=None, pending_question=None, seq=seq
        )
