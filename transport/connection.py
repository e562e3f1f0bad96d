"""One accepted WebSocket as the endpoints use it: frames in, frames out.

Routing and authentication happen on werkzeug's request thread before the
upgrade (so a refusal is a plain HTTP answer); then ``accept`` takes the
socket and the I/O loop drives it. ``send`` never blocks and never raises:
False means the frame was not queued (closing, gone, or over the byte
budget); the endpoint decides what that means for its peer.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from transport.ioloop import IOLoop
from transport.protocol import encode_bytes
from transport.websocket import Limits, WebSocket, accept, text_frame

log = logging.getLogger(__name__)

#: Close code for a peer whose outbox went over its byte budget.
OVER_BUDGET = 4008


class Connection:
    def __init__(self, environ: dict[str, Any], kind: str, loop: IOLoop, limits: Limits) -> None:
        self.id = f"{kind}-{uuid.uuid4().hex[:12]}"
        sock, ws = accept(environ)
        # Frames are small and often back to back: without this, Nagle's
        # algorithm meets the peer's delayed ACK and a turn costs 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handlers: list[Callable[[str], None]] = []
        self._on_messages: Callable[[list[str | bytes]], None] = _ignore
        self.ws = WebSocket(loop, sock, ws, limits, self._messages, self._closed)

    def start(self, on_messages: Callable[[list[str | bytes]], None]) -> None:
        """Begin reading; ``on_messages`` runs on the loop's thread."""
        self._on_messages = on_messages
        self.ws.start()

    def on_close(self, handler: Callable[[str], None]) -> None:
        """``handler(reason)`` runs once on the loop's thread when the socket is closed."""
        self._handlers.append(handler)

    def send(self, frame: msgspec.Struct) -> bool:
        if self.ws.closing:  # nothing to encode for a peer that is being closed
            return False
        return self.ws.send_framed(_framed(frame))

    def close(self, code: int = 1000, reason: str = "", abandon: bool = False) -> None:
        self.ws.close(code, reason, abandon)

    def close_over_budget(self, reason: str) -> None:
        """The peer is not reading: drop its backlog, tell it why (4008)."""
        self.ws.close(OVER_BUDGET, reason, abandon=True)

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def _messages(self, messages: list[str | bytes]) -> None:
        self._on_messages(messages)

    def _closed(self, reason: str) -> None:
        for handler in self._handlers:
            try:
                handler(reason)
            except Exception:
                log.exception("a close handler of %s failed", self.id)


def _ignore(messages: list[str | bytes]) -> None:
    pass


class _LastFrame(threading.local):
    """The last frame made on this thread, and what it was made from."""

    source: msgspec.Struct | None = None
    frame: bytes = b""


_last = _LastFrame()


def _framed(frame: msgspec.Struct) -> bytes:
    """The WebSocket frame of ``frame``, made once when a session hands the same
    event to each of its subscribers in turn (on its thread): fan-out to N
    clients costs one encoding, not N."""
    if _last.source is not frame:
        _last.frame = text_frame(encode_bytes(frame))
        _last.source = frame
    return _last.frame
