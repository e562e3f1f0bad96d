"""A read-only view of the session registry for the edges.

The supervisor owns the registry; after every change to which sessions exist
it publishes an immutable snapshot here. Transport threads look sessions up
in that snapshot instead of asking the supervisor, which keeps two thread
hand-offs off every relayed message.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from actors.messages import SessionEntry


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

    def __len__(self) -> int:
        return len(self._entries)
