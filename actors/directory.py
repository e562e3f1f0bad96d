"""The session registry as the edges read it: one snapshot, one writer.

The supervisor owns the registry; after every change to which sessions exist
it publishes an immutable snapshot here, before it answers the request that
caused the change. List and get both read this one snapshot (each entry's
``InfoCell`` holds the latest info its session posted), so once
``delete_session`` returns neither shows the session. Transport threads look
sessions up here instead of asking the supervisor, which keeps two thread
hand-offs off every relayed message.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from actors.messages import SessionEntry
from transport.protocol import SessionInfo


class Directory:
    def __init__(self) -> None:
        self._entries: Mapping[str, SessionEntry] = MappingProxyType({})

    def publish(self, entries: dict[str, SessionEntry]) -> None:
        """Only the supervisor calls this; readers see whole snapshots."""
        self._entries = MappingProxyType(entries)

    def get(self, session_id: str) -> SessionEntry | None:
        return self._entries.get(session_id)

    def ids(self) -> list[str]:
        return list(self._entries)

    def infos(self) -> list[SessionInfo]:
        """Every listed session's latest info, oldest first."""
        infos = [e.cell.info for e in self._entries.values() if e.cell is not None]
        return sorted(infos, key=lambda info: info.created_at)

    def __len__(self) -> int:
        return len(self._entries)
