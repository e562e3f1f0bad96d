"""The session registry as the edges read it: one snapshot, one writer.

The supervisor owns the registry; after every change to which sessions exist
it writes the changed entries here, before it answers the request that
caused the change. Entries are immutable values; the supervisor is the only
writer, and readers copy the table (one C-level step under the GIL) before
they walk it, so a create costs the same with ten sessions or ten thousand.
List and get both read this one table (each entry's ``InfoCell`` holds the
latest info its session posted), so once
``delete_session`` returns neither shows the session. Transport threads look
sessions up here instead of asking the supervisor, which keeps two thread
hand-offs off every relayed message. A pooled agent can learn its session's
id before that publish (the claim is sent from inside the create), so the
agent endpoint asks the supervisor before it calls an id unknown
(``Berth.lookup_for_agent``).
"""

from __future__ import annotations

from actors.messages import SessionEntry
from transport.protocol import SessionInfo


class Directory:
    def __init__(self) -> None:
        self._entries: dict[str, SessionEntry] = {}

    def publish(self, entries: dict[str, SessionEntry]) -> None:
        """Replace the whole table (start-up, recovery, the pool's few slots)."""
        self._entries = dict(entries)

    def put(self, entry: SessionEntry) -> None:
        """Only the supervisor writes."""
        self._entries[entry.session_id] = entry

    def drop(self, session_id: str) -> None:
        self._entries.pop(session_id, None)

    def get(self, session_id: str) -> SessionEntry | None:
        return self._entries.get(session_id)

    def ids(self) -> list[str]:
        return list(self._entries.copy())

    def infos(self) -> list[SessionInfo]:
        """Every listed session's latest info, oldest first."""
        infos = [e.cell.info for e in self._entries.copy().values() if e.cell is not None]
        return sorted(infos, key=lambda info: info.created_at)

    def __len__(self) -> int:
        return len(self._entries)
