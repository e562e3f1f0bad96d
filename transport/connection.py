"""One accepted WebSocket: a receive loop on the request thread, an outbox writer.

simple-websocket ignores the request path and cannot answer 401: routing and
authentication happen before ``accept``. Receives always use a timeout so a
shutdown is noticed; ``max_message_size`` bounds a peer's frames.
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

from transport.outbox import Outbox
from transport.protocol import encode

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
        self.ws = simple_websocket.Server.accept(
            environ, max_message_size=max_message_size, ping_interval=ping_interval
        )
        self.outbox = Outbox(self.ws, outbox_limit, self.id)
        self.stopping = threading.Event()
        self.close_reason = "connection closed"

    def send(self, frame: msgspec.Struct) -> bool:
        return self.outbox.put(encode(frame))

    def send_text(self, text: str) -> bool:
        return self.outbox.put(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_reason = reason or self.close_reason
        self.stopping.set()
        self.outbox.close(code, reason)

    def frames(self) -> Iterator[str | bytes]:
        """Incoming frames until the peer or the server closes."""
        while not self.stopping.is_set():
            try:
                data = self.ws.receive(timeout=RECEIVE_POLL)
            except simple_websocket.ConnectionClosed as closed:
                self.close_reason = (
                    f"closed by peer ({closed.reason}{' ' + closed.message if closed.message else ''})"
                )
                return
            if data is not None:
                yield data
            elif not self.ws.connected:
                self.close_reason = "connection lost"
                return

    def finish(self) -> None:
        """After the receive loop: flush and close the socket, wait for the writer."""
        self.close(1000, "")
        self.outbox.done.wait(timeout=5)
