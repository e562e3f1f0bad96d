"""One server-side WebSocket, driven without simple-websocket's reader thread.

simple-websocket accepts the upgrade from werkzeug's environ and turns wsproto
events into messages, pongs and close replies; its own design adds a reader
thread per connection that hands every frame to the request thread. On the
relay path that hand-off costs more than the frame's real work, and each idle
connection pays for the thread. Here the request thread reads the socket
itself (``receive``) and outgoing frames are written by the caller when the
socket can take them at once, else by a writer thread started only when
needed (``send``): a slow peer never blocks the caller, and its backlog is
bounded (``send`` returns False when full).
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections import deque
from typing import Any

import simple_websocket
from wsproto.events import CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

log = logging.getLogger(__name__)

#: How long, and for how many bytes, a closing socket waits for its peer to close.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20


class _NoThread:
    """simple-websocket starts a reader thread in its constructor; not here."""

    name = ""

    def __init__(self, target: Any = None) -> None:
        pass

    def start(self) -> None:
        pass


class _OutboxSocket:
    """What simple-websocket writes (pongs, close replies) goes through the outbox."""

    def __init__(self, owner: InlineWebSocket) -> None:
        self._owner = owner

    def send(self, data: bytes) -> int:
        self._owner.send_bytes(data, force=True)
        return len(data)


class InlineWebSocket(simple_websocket.Server):  # type: ignore[misc]
    def __init__(
        self,
        environ: dict[str, Any],
        limit: int,
        max_message_size: int,
        ping_interval: float | None,
        name: str,
    ) -> None:
        self._wire_lock = threading.Lock()
        self._cond = threading.Condition()
        self._backlog: deque[bytes] = deque()
        self._limit = limit
        self._busy = False
        self._handoff = False
        self._closing = False
        self._writer: threading.Thread | None = None
        self._name = name
        self.done = threading.Event()
        super().__init__(environ, max_message_size=max_message_size, thread_class=_NoThread)
        self.raw: socket.socket = environ["werkzeug.socket"]
        self.sock = _OutboxSocket(self)
        #: No extension (compression) negotiated: frames can be framed by hand,
        #: at a tenth of wsproto's cost; with one, wsproto frames them.
        self._plain = not _extensions(self.ws)
        self._ping_interval = ping_interval
        self.pong_received: bool = True
        self._next_ping = time.monotonic() + ping_interval if ping_interval else float("inf")

    # ------------------------------------------------------------ sending

    def send_text(self, text: str) -> bool:
        """Queue a text frame; False when the peer is too far behind."""
        return self.send_utf8(text.encode())

    def send_utf8(self, payload: bytes) -> bool:
        """Queue a text frame whose payload is already UTF-8 (e.g. msgspec's JSON)."""
        if self._plain:
            return self.send_bytes(_text_frame(payload))
        with self._wire_lock:
            try:
                data = self.ws.send(TextMessage(data=payload.decode()))
            except LocalProtocolError:  # closing: dropped, as send_bytes drops it (never raised:
                return True  # the caller is an actor, and the error's text would hold the frame)
        return self.send_bytes(data)

    def send_bytes(self, data: bytes, force: bool = False) -> bool:
        """One writer at a time owns the socket (``_busy``): the caller when it
        can write at once, else the writer thread, to which a caller hands
        over (``_handoff``) what the socket would not take."""
        with self._cond:
            if self._closing and not force:
                return True
            if self._busy or self._backlog:
                if len(self._backlog) >= self._limit and not force:
                    return False
                self._backlog.append(data)
                self._cond.notify_all()
                return True
            self._busy = True
        sent = self._try_send(data)
        with self._cond:
            if sent < len(data):
                self._backlog.appendleft(data[sent:])
            if self._backlog:
                self._handoff = True
                self._start_writer()
            else:
                self._busy = False
            self._cond.notify_all()
        return True

    def _try_send(self, data: bytes) -> int:
        try:
            sent: int = self.raw.send(data, socket.MSG_DONTWAIT)
            return sent
        except BlockingIOError:
            return 0
        except OSError:
            self.connected = False
            return len(data)  # the peer is gone: nothing more will be delivered

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._drain, name=f"berth-writer-{self._name}", daemon=True
            )
            self._writer.start()

    def _drain(self) -> None:
        """The writer: sends what was handed over, blocking on the socket if it must.

        It ends with the connection (``finish``) or when the peer is gone."""
        while True:
            with self._cond:
                while not (self._backlog and (self._handoff or not self._busy)):
                    if self.done.is_set() or not self.connected:
                        return
                    self._cond.wait(1.0)
                self._busy, self._handoff = True, False
                batch = b"".join(self._backlog)
                self._backlog.clear()
            try:
                self.raw.sendall(batch)
            except OSError:
                self.connected = False
                with self._cond:
                    self._backlog.clear()
                    self._closing = True
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                if self._backlog:
                    self._handoff = True
                else:
                    self._busy = False
                self._cond.notify_all()

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Queue the close frame after everything already queued; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
        with self._wire_lock:
            try:
                data = self.ws.send(CloseConnection(reason or 1000, message))
            except Exception:  # the peer closed first: nothing to send
                return
        self.send_bytes(data, force=True)

    def flush(self, timeout: float) -> None:
        """Wait until everything queued is written (or the writer gave up).

        Not cut short when the peer has closed its side: the close frame
        answering it may still be queued behind a frame being written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._backlog or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(min(remaining, 0.05))

    def backlog(self) -> int:
        with self._cond:
            return len(self._backlog)

    # ------------------------------------------------------------ receiving

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message; None on timeout; raises ConnectionClosed at the end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.input_buffer:
            if not self.connected:
                raise simple_websocket.ConnectionClosed(self.close_reason, self.close_message)
            wait = self._next_ping - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            ready, _, _ = select.select([self.raw], [], [], max(0.0, wait))
            if ready:
                self._read()
            elif time.monotonic() >= self._next_ping:
                self._ping()
            elif deadline is not None and time.monotonic() >= deadline:
                return None
        return self.input_buffer.pop(0)  # type: ignore[no-any-return]

    def _read(self) -> None:
        try:
            data = self.raw.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.connected = False
            return
        with self._wire_lock:
            self.ws.receive_data(data)
            self.connected = self._handle_events() and self.connected

    def _ping(self) -> None:
        if not self.pong_received:
            self.close(1008, "ping timeout")
            self.connected = False
            return
        self.pong_received = False
        with self._wire_lock:
            data = self.ws.send(Ping())
        self.send_bytes(data, force=True)
        assert self._ping_interval is not None
        self._next_ping = time.monotonic() + self._ping_interval

    def finish(self, timeout: float = 5.0) -> None:
        """Flush, then close the socket for good (the request thread's last act)."""
        self.flush(timeout)
        self.done.set()
        with self._cond:
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=timeout)
        self._linger()
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _linger(self) -> None:
        """Half-close, then read and drop what the peer still sends, briefly.

        Closing a socket with unread data in it sends a reset, and a reset
        can destroy the close frame (1009 too big, 1007 invalid UTF-8) before
        the peer reads it; so the peer gets the reason, not "connection reset"."""
        try:
            self.raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return
            try:
                ready, _, _ = select.select([self.raw], [], [], wait)
                data = self.raw.recv(65536) if ready else b""
            except OSError:
                return
            if not data:
                return
            drained += len(data)


def _extensions(ws: Any) -> list[Any]:
    try:
        return list(ws._connection._proto.extensions)
    except AttributeError:  # another wsproto layout: assume the worst
        return [None]


def _text_frame(payload: bytes) -> bytes:
    """A final, unmasked (server to client) text frame."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload
