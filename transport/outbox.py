"""A bounded per-connection outbox drained by the connection's own writer.

Actors hand frames to ``put`` and return at once: a slow or dead peer fills
its own outbox, never an actor's thread (architecture rule 8). When the outbox
is full ``put`` returns False and the owner decides (clients are cut off with
a close reason; they resubscribe to catch up from history).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

log = logging.getLogger(__name__)


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Outbox:
    def __init__(self, ws: Any, limit: int, name: str) -> None:
        self._ws = ws
        self._limit = limit
        self._items: deque[str | _Close] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"berth-writer-{name}", daemon=True)
        self._thread.start()

    def put(self, text: str) -> bool:
        with self._cond:
            if self._closing:
                return True
            if len(self._items) >= self._limit:
                return False
            self._items.append(text)
            if len(self._items) == 1:
                self._cond.notify()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send what is queued, then the close frame; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._items.append(_Close(code, reason))
            self._cond.notify()

    def backlog(self) -> int:
        with self._cond:
            return len(self._items)

    def _drain(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._items:
                        self._cond.wait()
                    batch = list(self._items)
                    self._items.clear()
                for item in batch:
                    if isinstance(item, _Close):
                        self._close_socket(item)
                        return
                    self._ws.send(item)
        except Exception as exc:  # the peer went away: nothing more to send
            log.debug("writer stopped: %r", exc)
            with self._cond:
                self._closing = True
                self._items.clear()
        finally:
            self.done.set()

    def _close_socket(self, item: _Close) -> None:
        try:
            self._ws.close(item.code, item.reason)
        except Exception as exc:
            log.debug("close on a closed socket: %r", exc)
