"""An in-process agent link: records what the session sends to its agent."""

from __future__ import annotations

import itertools
import threading

from transport.protocol import ServerToAgent

_ids = itertools.count(1)


class FakeLink:
    def __init__(self) -> None:
        self._link_id = f"link-{next(_ids)}"
        self.sent: list[ServerToAgent] = []
        self.closed: tuple[int, str] | None = None
        #: What its agent says it has of the server's numbered frames (``X-Berth-Received``).
        self.received = 0
        self._lock = threading.Lock()

    @property
    def link_id(self) -> str:
        return self._link_id

    def send(self, frame: ServerToAgent) -> None:
        with self._lock:
            self.sent.append(frame)

    def close(self, code: int, reason: str) -> None:
        with self._lock:
            self.closed = (code, reason)

    def highest_number(self) -> int:
        """The highest link number among the frames sent here (0: none numbered)."""
        with self._lock:
            return max((getattr(f, "n", 0) for f in self.sent), default=0)

    def frames(self, kind: type) -> list[ServerToAgent]:
        with self._lock:
            return [f for f in self.sent if isinstance(f, kind)]
