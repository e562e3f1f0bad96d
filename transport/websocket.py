"""One server-side WebSocket on the I/O loop: wsproto's sans-IO state machine
over a non-blocking socket.

The handshake is answered on werkzeug's request thread (``accept``), then the
socket belongs to the loop: it reads, feeds wsproto, answers pings and close
frames, and hands the messages one read completed to ``on_messages`` in one
call, at most ``messages_per_turn`` frames per turn of the loop: the rest of
that read is handed on in later turns, after every other ready socket had
its turn, and the socket is not read again until it is all handed on (so a
peer sending a flood of small frames holds the loop no longer than one with
a single frame, and its backlog stays in the kernel, not in memory).

Any thread may ``send``: the caller writes straight to the socket when
nothing is queued (no thread hand-off on the relay path), else the bytes wait
in the outbox, bounded by a byte budget, until the loop sees the socket
writable. A send after the close began is dropped, never raised.
Only the loop's thread touches wsproto.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Request, TextMessage
from wsproto.handshake import H11Handshake

from transport.frame_reader import FrameReader, Item, TooBig
from transport.ioloop import IOLoop, Timer

log = logging.getLogger(__name__)

#: One read per readiness, while still batching a burst into one mailbox message;
#: what one turn of the loop does with it is bounded by ``Limits.messages_per_turn``.
READ_SIZE = 65_536
WRITE_CHUNK = 262_144
MESSAGE_TOO_BIG = 1009
#: An unmasked, empty ping (FIN, opcode 9): the bytes wsproto would make, built once,
#: since at 10,000 idle connections a ping goes out every few milliseconds.
PING_FRAME = b"\x89\x00"
#: Keep-alive checks fall on a grid of the ping interval / this (0.5 s at 45 s).
PING_GRID_STEPS = 90


class HandshakeFailed(Exception):
    """The request is not a WebSocket upgrade wsproto accepts."""


@dataclass(frozen=True)
class Limits:
    """What one connection may hold or take (from ``BerthConfig``)."""

    outbox_bytes: int
    max_message_size: int
    ping_interval: float | None
    close_timeout: float
    #: Frames handed on per loop turn (``BerthConfig.ws_messages_per_turn``).
    messages_per_turn: int = 64


def accept(environ: dict[str, Any]) -> tuple[socket.socket, WsprotoConnection]:
    """Answer the upgrade (101, no extensions) and take the socket from werkzeug.

    werkzeug parsed the request; wsproto checks it and writes the answer. The
    returned socket owns the descriptor; werkzeug's object is left empty, so
    its clean-up after the request closes nothing."""
    raw: socket.socket = environ["werkzeug.socket"]
    headers = [
        (key[5:].replace("_", "-").lower().encode(), str(value).encode("latin-1"))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    handshake = H11Handshake(ConnectionType.SERVER)
    handshake.initiate_upgrade_connection(headers, environ.get("PATH_INFO", "/") or "/")
    if not any(isinstance(event, Request) for event in handshake.events()):
        raise HandshakeFailed("not a WebSocket upgrade request")
    raw.sendall(handshake.send(AcceptConnection()))
    connection = handshake.connection
    if connection is None:
        raise HandshakeFailed("the WebSocket handshake did not complete")
    sock = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
    sock.setblocking(False)
    return sock, connection


class WebSocket:
    """Callbacks run on the loop's thread and must not block: ``on_messages``
    gets every message one read completed, ``on_closed`` the reason, once."""

    def __init__(
        self,
        loop: IOLoop,
        sock: socket.socket,
        ws: WsprotoConnection,
        limits: Limits,
        on_messages: Callable[[list[str | bytes]], None],
        on_closed: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._ws = ws
        self._limits = limits
        self._on_messages = on_messages
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        self._writing = False
        self._closing = False
        self._closed = False
        self._close_after_flush = False
        #: After a frame wsproto could not parse: read and drop until the peer
        #: closes (closing with unread data would reset the connection, and the
        #: reset can destroy the close frame before the peer reads it).
        self._draining = False
        self.close_reason = "connection closed"
        self._partial: list[str | bytes] = []
        self._partial_size = 0
        self._last_rx = time.monotonic()
        self._ping_sent = False
        self._timer: Timer | None = None
        #: What is left of the last read's events (None: all handed on), and
        #: whether a later turn is already due to hand on more of them.
        self._reader = FrameReader(ws, limits.max_message_size)
        self._events: Iterator[Item] | None = None
        self._again = False
        self._paused = False

    def start(self) -> None:
        """Hand the socket to the loop (any thread)."""
        self._loop.call_soon(self._attach)

    # ------------------------------------------------------------ any thread

    def send_utf8(self, payload: bytes) -> bool:
        """Queue one text frame; False when it is dropped: the connection is
        closing, gone, or over its byte budget (the caller decides what then)."""
        return self._write(text_frame(payload), control=False)

    def send_framed(self, frame: bytes) -> bool:
        """``send_utf8`` for a frame already made by ``text_frame`` (one frame
        may go to many peers: a server's frames are not masked)."""
        return self._write(frame, control=False)

    @property
    def closing(self) -> bool:
        """The close began (or ended): sends are dropped from now on."""
        return self._closing or self._closed

    def close(self, code: int = 1000, reason: str = "", abandon: bool = False) -> None:
        """Begin the close handshake; idempotent. ``abandon`` drops what is
        queued (a peer over its budget would never read it anyway)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if reason:
                self.close_reason = reason
            if abandon:
                self._drop_backlog()
        self._loop.call_soon(lambda: self._send_close(code, reason))

    def drop_when_flushed(self) -> None:
        """Close the socket once what is queued (the close frame too) is sent,
        without waiting for the peer's answer (a server shutting down)."""
        self._loop.call_soon(self._finish_after_flush)

    @property
    def closed(self) -> bool:
        return self._closed

    def pause_reading(self, seconds: float, then: Callable[[], None]) -> None:
        """Read nothing for ``seconds`` (loop thread), then call ``then``: the
        peer's TCP window fills and holds it back (a rate limit, no thread asleep)."""
        if self._closed:
            return
        self._paused = True
        self._loop.unregister(self._sock)
        self._loop.call_later(seconds, lambda: self._resume_reading(then))

    def _resume_reading(self, then: Callable[[], None]) -> None:
        if self._closed:
            return
        self._paused = False
        with self._lock:
            writing = bool(self._out)
        try:
            self._loop.register(self._sock, self, write=writing)
        except (KeyError, ValueError, OSError):
            pass
        then()  # it may pause again
        self._pump_later()

    @property
    def reading_paused(self) -> bool:
        """The loop reads nothing from this socket for now (``pause_reading``)."""
        return self._paused

    def backlog_bytes(self) -> int:
        with self._lock:
            return self._out_bytes

    # ------------------------------------------------------------ writing

    def _write(self, data: bytes, control: bool) -> bool:
        with self._lock:
            if self._closed or (self._closing and not control):
                return False
            if self._out or self._writing:
                if not control and self._out_bytes + len(data) > self._limits.outbox_bytes:
                    return False
                self._out.append(data)
                self._out_bytes += len(data)
                return True
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return False  # the reader side notices the loss
            if sent < len(data):
                rest = memoryview(data)[sent:]
                self._out.append(rest)
                self._out_bytes += len(rest)
                self._writing = True
                self._loop.call_soon(self._arm_write)
            return True

    def _drop_backlog(self) -> None:
        """Keep only the rest of a frame already partly on the wire (lock held)."""
        head = self._out[0] if self._out and isinstance(self._out[0], memoryview) else None
        self._out.clear()
        self._out_bytes = 0
        if head is not None:
            self._out.append(head)
            self._out_bytes = len(head)

    def _arm_write(self) -> None:
        if not self._closed:
            self._loop.want_write(self._sock, self, True)

    def on_writable(self) -> None:
        with self._lock:
            while self._out:
                chunk = self._take_chunk()
                try:
                    sent = self._sock.send(chunk)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._out.clear()
                    self._out_bytes = 0
                    break
                self._out_bytes -= sent
                if sent < len(chunk):
                    self._out.appendleft(memoryview(chunk)[sent:])
                    return
            self._writing = False
            done = self._close_after_flush
        self._loop.want_write(self._sock, self, False)
        if done:
            self._finish()

    def _take_chunk(self) -> bytes | memoryview:
        first = self._out.popleft()
        if len(first) >= WRITE_CHUNK or not self._out:
            return first
        parts, size = [first], len(first)
        while self._out and size + len(self._out[0]) <= WRITE_CHUNK:
            part = self._out.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    # ------------------------------------------------------------ loop thread

    def _attach(self) -> None:
        with self._lock:
            writing = bool(self._out)
        try:
            self._loop.register(self._sock, self, write=writing)
        except (ValueError, OSError):  # the socket is already gone
            self._finish()
            return
        self._schedule_ping(self._limits.ping_interval)

    def on_readable(self) -> None:
        if self._events is not None:  # the last read is still being handed on; the socket waits
            self._pump_later()
            return
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost("connection lost")
            return
        if self._draining:
            return
        self._last_rx = time.monotonic()
        self._ping_sent = False
        if self._ws.state is ConnectionState.CLOSED:
            return
        self._reader.feed(data)
        self._events = self._reader.events()
        self._pump()

    def _pump(self) -> None:
        """Hand on at most ``messages_per_turn`` frames of the last read; a later
        turn of the loop does the rest (after the other ready sockets)."""
        self._again = False
        events = self._events
        if events is None or self._closed or self._paused:
            return
        messages: list[str | bytes] = []
        budget = self._limits.messages_per_turn
        finished = True
        for event in events:
            if isinstance(event, (str, bytes)):  # a whole message, cut out by the reader
                if not self._closing:
                    messages.append(event)
            elif isinstance(event, (TextMessage, BytesMessage)):
                if self._closing or not self._collect(event, messages):
                    break
            elif isinstance(event, TooBig):
                self._too_big()
                break
            elif isinstance(event, Ping):
                self._control(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._peer_closed(event)
                break
            else:
                continue
            budget -= 1
            if budget <= 0:
                finished = False
                break
        if finished:
            self._events = None
        if messages and not self._closed:
            try:
                self._on_messages(messages)
            except Exception:
                log.exception("a connection's message handler failed")
        self._pump_later()

    def _pump_later(self) -> None:
        if self._events is not None and not (self._again or self._closed or self._paused):
            self._again = True
            self._loop.call_soon(self._pump)

    def _collect(self, event: TextMessage | BytesMessage, messages: list[str | bytes]) -> bool:
        data = event.data if isinstance(event.data, str) else bytes(event.data)
        self._partial.append(data)
        self._partial_size += len(data)
        if self._partial_size > self._limits.max_message_size:
            self._partial, self._partial_size = [], 0
            self._too_big()
            return False
        if event.message_finished:
            parts = self._partial
            if len(parts) == 1:
                messages.append(parts[0])
            elif isinstance(parts[0], str):
                messages.append("".join(p for p in parts if isinstance(p, str)))
            else:
                messages.append(b"".join(p for p in parts if isinstance(p, bytes)))
            self._partial, self._partial_size = [], 0
        return True

    def _too_big(self) -> None:
        """Close with 1009; what the peer still sends of it is read and dropped."""
        with self._lock:
            self._closing = True
            self.close_reason = "message too big"
        limit = self._limits.max_message_size
        self._send_close(MESSAGE_TOO_BIG, f"Message is too big (over {limit} bytes)")
        self._draining = True

    def _control(self, data: bytes) -> None:
        if data:
            self._write(data, control=True)

    def _peer_closed(self, event: CloseConnection) -> None:
        detail = f" {event.reason}" if event.reason else ""
        with self._lock:
            if not self._closing:
                self.close_reason = f"closed by peer ({event.code}{detail})"
            self._closing = True
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._control(self._ws.send(event.response()))
        elif self._ws.state is ConnectionState.OPEN:  # a frame wsproto could not parse
            self._control(self._ws.send(CloseConnection(event.code, event.reason)))
            self._draining = True
            self._cancel_timer()
            self._timer = self._loop.call_later(self._limits.close_timeout, self._finish)
            return
        self._finish_after_flush()

    def _send_close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        if self._ws.state is ConnectionState.OPEN:
            self._control(self._ws.send(CloseConnection(code, reason)))
            self._cancel_timer()
            self._timer = self._loop.call_later(self._limits.close_timeout, self._finish)
        else:
            self._finish_after_flush()

    def _finish_after_flush(self) -> None:
        with self._lock:
            pending = bool(self._out)
            self._close_after_flush = pending
        if not pending:
            self._finish()
            return
        self._cancel_timer()
        self._timer = self._loop.call_later(self._limits.close_timeout, self._finish)

    def _lost(self, reason: str) -> None:
        with self._lock:
            if not self._closing:
                self.close_reason = reason
            self._closing = True
        self._finish()

    def _finish(self) -> None:
        """Close the socket for good and tell the owner (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._out.clear()
            self._out_bytes = 0
        self._cancel_timer()
        self._loop.unregister(self._sock)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._on_closed(self.close_reason)
        except Exception:
            log.exception("a connection's close handler failed")

    # ------------------------------------------------------------ keep-alive

    def _schedule_ping(self, delay: float | None) -> None:
        """Keep-alive checks fall on a coarse grid, so the pings of many idle
        connections go out in one loop turn and their pongs come back together:
        a fraction of a wake-up per ping instead of one or two (measured: 10,000
        idle connections at 45 s went from 1.24 % to 0.50 % of a core)."""
        interval = self._limits.ping_interval
        if delay is not None and interval is not None and not self._closed:
            now = time.monotonic()
            grid = interval / PING_GRID_STEPS
            due = math.ceil((now + delay) / grid) * grid
            self._timer = self._loop.call_later(due - now, self._ping_due)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ping_due(self) -> None:
        """Ping a peer silent for most of an interval; close one that stayed silent.

        "Most": the pong to the last ping arrived a moment after it was sent, so
        waiting for a whole interval of silence would wake this timer twice per
        idle cycle (once to find the pong a few milliseconds too recent).
        """
        interval = self._limits.ping_interval
        if interval is None or self._closing:
            return
        quiet = time.monotonic() - self._last_rx
        if quiet < interval * 0.75:
            self._schedule_ping(interval - quiet)
            return
        if self._ping_sent:
            with self._lock:
                self.close_reason = "ping timeout"
            self._lost("ping timeout")
            return
        self._ping_sent = True
        self._control(PING_FRAME)
        self._schedule_ping(interval)


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked (server to client) text frame; no extension is ever
    negotiated, so this is byte for byte what wsproto would make."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload
