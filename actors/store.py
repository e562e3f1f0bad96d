"""Where sessions are kept across restarts: one small interface.

The SessionActor calls ``save_session`` with its latest ``SessionState``
after every change that must survive a restart, and ``append_event`` with
every event its journal numbers. Implementations must not block the caller
on disk I/O (write behind). ``NullStore`` keeps nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from transport.protocol import SessionEvent


class SessionStore(Protocol):
    def save_session(self, state: Any) -> None: ...

    def append_event(self, session_id: str, event: SessionEvent) -> None: ...

    def forget(self, session_id: str) -> None: ...

    def close(self) -> None: ...


class NullStore:
    """Keeps nothing: sessions end with the process."""

    def save_session(self, state: Any) -> None:
        pass

    def append_event(self, session_id: str, event: SessionEvent) -> None:
        pass

    def forget(self, session_id: str) -> None:
        pass

    def close(self) -> None:
        pass
