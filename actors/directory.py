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

    def __len__(self) -> int:
        return len(self._entries)


class SessionBoard:
    """Each session's latest ``SessionInfo``, posted by the session itself.

    Listing sessions reads the board instead of asking every actor, and a
    status change costs no message to the supervisor (which hears only of
    sessions that end). Each session writes only its own entry; entries are
    immutable values, replaced whole.
    """

    def __init__(self) -> None:
        self._infos: dict[str, SessionInfo] = {}

    def post(self, info: SessionInfo) -> None:
        self._infos[info.id] = info

    def remove(self, session_id: str) -> None:
        self._infos.pop(session_id, None)

    def get(self, session_id: str) -> SessionInfo | None:
        return self._infos.get(session_id)

    def all(self) -> list[SessionInfo]:
        return sorted(list(self._infos.values()), key=lambda info: info.created_at)
