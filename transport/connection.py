"""One accepted WebSocket as the endpoints use it: frames in, frames out.

Routing and authentication happen before the upgrade (simple-websocket
cannot answer 401). Receives poll with a timeout so a shutdown is noticed;
``max_message_size`` bounds a peer's frames; sends never block the caller.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import simple_websocket

from transport.protocol import encode_bytes
from transport.websocket import InlineWebSocket

log = logging.getLogger(__name__)

RECEIVE_POLL = 1.0


class Connection:
    def __init__(
        self,
        environ: dict[str, Any],
        kind: str,
        outbox_limit: int,
        max_message_size: int,
        ping_interval: float | None,
    ) -> None:
        self.id = f"{kind}-{uuid.uuid4().hex[:12]}"
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            # Frames are small and often back to back: without this, Nagle's
            # algorithm meets the peer's delayed ACK and a turn costs 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = InlineWebSocket(environ, outbox_limit, max_message_size, ping_interval, self.id)
        self.stopping = threading.Event()
        self.close_reason = "connection closed"

    def send(self, frame: msgspec.Struct) -> bool:
        """False when the peer has fallen more than the outbox limit behind."""
        return self.ws.send_utf8(encode_bytes(frame))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_reason = reason or self.close_reason
        self.stopping.set()
        self.ws.close(code, reason)

    def stop_reading(self) -> None:
        """Wake the receive loop now (server shutdown: no reply to wait for)."""
        self.stopping.set()
        try:
            self.ws.raw.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def frames(self) -> Iterator[str | bytes]:
        """Incoming frames until the peer or the server closes."""
        while not self.stopping.is_set():
            try:
                data = self.ws.receive(timeout=RECEIVE_POLL)
            except simple_websocket.ConnectionClosed as closed:
                detail = f" {closed.message}" if closed.message else ""
                self.close_reason = f"closed by peer ({closed.reason}{detail})"
                return
            if data is not None:
                yield data

    def finish(self) -> None:
        """After the receive loop: flush, close, end the writer."""
        self.close(1000, "")
        self.ws.finish()
