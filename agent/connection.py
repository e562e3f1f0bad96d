"""The agent's link to the server: one WebSocket, reconnected forever.

Built on ``websocket.create_connection`` rather than ``WebSocketApp`` so that
every close is seen and judged here: ``run_forever(reconnect=N)`` would also
reconnect after a deliberate server close and report neither. Which closes
mean "stop" and how long to wait before retrying is ``agent.reconnect``;
every other end of a connection (a drop, 1001, 1006, 1011, a refused
connection, a server that is not up yet, a server silent for two ping
intervals) is retried, forever.

Two threads: the connector/reader (handshake, receive, decode, dispatch) and
the single writer, which owns every data send so frames never interleave.
Frames queue in the ``Outbox`` while the link is down and go out in order
when it is back. Every frame written is numbered and kept (``SentLog``)
until the server acknowledges it (``link_ack``, sent once what the frame did
is stored); each connection starts with the server's ``link_resume``, which
says what it has: the agent resends the rest, in order, before anything new.
So neither a drop nor a server crash loses a frame, and none arrives twice.

The other way round is the same: the server numbers its data frames, the
agent hands each number to ``on_frame`` once (a resend of one it has is
dropped), acknowledges with an unnumbered ``link_ack``, and names the
highest it has in every upgrade (``X-Berth-Received``), so the server
resends exactly what it missed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import websocket

from agent.outbox import Entry, Outbox, OutboxFull, SentLog
from agent.reconnect import STOP_CLOSE_CODES, STOP_HTTP_STATUSES, CloseInfo, backoff_delay, parse_close
from transport.protocol import (
    AgentError,
    AgentLinkAck,
    AgentToServer,
    FrameError,
    LinkAck,
    LinkResume,
    ServerToAgent,
    decode_server_frame,
    encode_bytes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionConfig:
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    coalesce_window: float = 0.003
    max_buffered_frames: int = 100_000
    max_batch_chars: int = 64 * 1024
    connect_timeout: float = 10.0
    ping_interval: float = 60.0
    #: How long a ``link_ack`` waits, so that one covers a burst and the frames
    #: a turn sends at once (its result) go out first.
    ack_delay: float = 0.02


class ConnectionStopped(RuntimeError):
    """The connection is closed for good; frames can no longer be queued."""


class AgentConnection:
    """A reconnecting WebSocket client with an ordered outbox."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str],
        on_frame: Callable[[ServerToAgent], None],
        config: ConnectionConfig | None = None,
        on_connected: Callable[[int], None] | None = None,
        on_stopped: Callable[[CloseInfo], None] | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._on_frame = on_frame
        self._config = config or ConnectionConfig()
        self._on_connected = on_connected
        self._on_stopped = on_stopped
        self._cond = threading.Condition()
        self._outbox = Outbox(
            self._config.max_buffered_frames,
            self._config.coalesce_window,
            self._config.max_batch_chars,
        )
        self._ws: websocket.WebSocket | None = None
        self._sent = SentLog()
        #: This process's link: the server numbers frames per epoch (a new process starts at 1).
        self._epoch = uuid.uuid4().hex
        #: The server's link_resume arrived on the current connection: data may flow.
        self._resumed = False
        #: Frames the server did not have at the resume, to be written first.
        self._resend: deque[bytes] = deque()
        self._inflight = False
        self._ping_wanted = False
        #: The highest numbered server frame handed to ``on_frame`` (for this process's life).
        self._server_received = 0
        #: When to tell the server ``_server_received`` (monotonic); None: it knows.
        self._ack_at: float | None = None
        self._draining = False
        self._closing = False
        self._writer_exit = False
        self._wake = threading.Event()
        self.stopped = threading.Event()
        self.stop_info: CloseInfo | None = None
        self.connections = 0
        self._down_since: float | None = time.monotonic()
        self._reader = threading.Thread(target=self._run, name="berth-conn", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="berth-conn-writer", daemon=True)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def disconnected_for(self) -> float:
        """Seconds since the server was last reachable (0 while connected)."""
        down_since = self._down_since
        return 0.0 if down_since is None else time.monotonic() - down_since

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    # ---------------------------------------------------------------- sending

    def send(self, frame: AgentToServer) -> None:
        """Queue ``frame``; never blocks on a full outbox. Raises OutboxFull or
        ConnectionStopped.

        A frame that need not wait for a batch (any non-stream frame, and a
        turn's first token: see ``Outbox.arrived``) with nothing queued ahead
        of it is written by the caller itself: on the turn's critical path
        that saves waking the writer thread. Other stream frames queue, to be
        coalesced.
        """
        with self._cond:
            if self._closing or self.stop_info is not None:
                raise ConnectionStopped("the connection to the server is closed")
            ws = self._ws
            if len(self._sent) >= self._config.max_buffered_frames:
                raise OutboxFull(f"{len(self._sent)} frames sent are still not acknowledged by the server")
            now = time.monotonic()
            at_once = self._outbox.arrived(frame, now)
            if (
                not at_once
                or ws is None
                or not self._resumed
                or self._resend
                or self._outbox
                or self._inflight
                or self._draining
            ):
                if self._outbox.put(frame, now, urgent=at_once):
                    self._cond.notify_all()
                return
            self._inflight = True
        self._send_now(ws, frame)

    def _send_now(self, ws: websocket.WebSocket, entry: Entry | bytes | None) -> None:
        """Write one entry, numbering it (bytes: a resend; None: a ping); the caller
        holds the ``_inflight`` claim. A failed write stays in the sent log."""
        try:
            if entry is None:
                ws.ping()
            else:
                if not isinstance(entry, bytes):
                    with self._cond:
                        entry = self._sent.number(entry)
                ws.send(entry, websocket.ABNF.OPCODE_TEXT)
        except Exception as exc:
            log.info("send failed, will resend after reconnecting: %s", exc or type(exc).__name__)
            with self._cond:
                if self._ws is ws:
                    self._ws = None
            _abort(ws)
        finally:
            with self._cond:
                self._inflight = False
                self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued frame has been handed to the socket."""
        with self._cond:
            return self._cond.wait_for(self._drained_locked, timeout)

    def _drained_locked(self) -> bool:
        """Everything sent and acknowledged: an agent that exits right after its last
        frame (a fatal error) must not let its container's exit overtake that frame."""
        idle = not self._outbox and not self._resend and not self._inflight and not self._sent
        return idle or self.stopped.is_set()

    def close(self, timeout: float = 5.0, reason: str = "agent exit") -> None:
        """Send what is queued and wait for the server to acknowledge it (up to
        ``timeout``), close with 1000, stop both threads."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._draining = True
            self._cond.notify_all()
            self._cond.wait_for(self._drained_locked, timeout)
            stuck = self._inflight  # a send blocked on a peer that stopped reading
            self._closing = True
            self._writer_exit = True
            ws, self._ws = self._ws, None
            dropped = self._outbox.clear()
            self._cond.notify_all()
        if dropped:
            log.warning("closing with %d frames never sent (server unreachable)", dropped)
        self._wake.set()
        if ws is not None and stuck:
            _abort(ws)
        elif ws is not None:
            try:
                ws.send_close(1000, reason)
            except Exception as exc:
                log.debug("close frame not sent: %s", exc)
        for thread in (self._reader, self._writer):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.1, deadline - time.monotonic()))
        if self._reader.is_alive() and ws is not None:
            _abort(ws)
        if self.stop_info is None:
            self.stop_info = CloseInfo(1000, reason)
        self.stopped.set()

    def join(self, timeout: float) -> bool:
        """Wait for both threads to end (after a stop or close); True if they have."""
        deadline = time.monotonic() + timeout
        for thread in (self._reader, self._writer):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not (self._reader.is_alive() or self._writer.is_alive())

    # ------------------------------------------------------ connect and read

    def _run(self) -> None:
        failures = 0
        try:
            while not self._closing:
                ws = self._connect()
                if ws is None:
                    if self.stop_info is not None:
                        return
                else:
                    connected_at = time.monotonic()
                    info = self._serve(ws)
                    if info is not None and info.stops and not self._closing:
                        self._stop(info)
                        return
                    if time.monotonic() - connected_at >= self._config.backoff_cap:
                        failures = 0
                delay = backoff_delay(failures, self._config.backoff_base, self._config.backoff_cap)
                failures += 1
                log.debug("reconnecting in %.3f s", delay)
                if self._wake.wait(delay):
                    return
        except Exception:
            log.exception("connection thread failed")
            self._stop(CloseInfo(None, "connection thread failed"))

    def _connect(self) -> websocket.WebSocket | None:
        try:
            token = self._token()
        except Exception as exc:
            log.warning("cannot read the session token: %s", exc)
            return None
        with self._cond:
            self._ack_at = None  # the upgrade says it
            hello = [f"X-Berth-Link: {self._epoch}", f"X-Berth-Received: {self._server_received}"]
        try:
            ws = websocket.create_connection(
                self.url,
                timeout=self._config.connect_timeout,
                header=[f"Authorization: Bearer {token}", *hello],
                skip_utf8_validation=True,
                enable_multithread=True,
                suppress_origin=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            code = STOP_HTTP_STATUSES.get(exc.status_code)
            if code is not None:
                self._stop(CloseInfo(code, f"handshake refused with HTTP {exc.status_code}"))
            else:
                log.info("handshake refused with HTTP %s; retrying", exc.status_code)
            return None
        except (OSError, websocket.WebSocketException) as exc:
            log.debug("cannot connect to %s: %s", self.url, exc)
            return None
        ws.settimeout(self._config.ping_interval)
        with self._cond:
            if self._closing:
                _close_socket(ws)
                return None
            self._ws = ws
            self._resumed = False
            self._resend.clear()
            self._down_since = None
            self.connections += 1
            count = self.connections
            self._cond.notify_all()
        log.info("connected to %s (connection %d)", self.url, count)
        if self._on_connected is not None:
            try:
                self._on_connected(count)
            except Exception:
                log.exception("on_connected callback failed")
        return ws

    def _serve(self, ws: websocket.WebSocket) -> CloseInfo | None:
        """Read until the connection ends; its close info, or None for a drop."""
        try:
            return self._read(ws)
        finally:
            with self._cond:
                if self._ws is ws:
                    self._ws = None
                self._down_since = time.monotonic()
                self._cond.notify_all()
            _close_socket(ws)

    def _read(self, ws: websocket.WebSocket) -> CloseInfo | None:
        awaiting_pong = False
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                if awaiting_pong:
                    log.warning("server silent for two ping intervals; reconnecting")
                    return None
                awaiting_pong = True
                with self._cond:
                    self._ping_wanted = True
                    self._cond.notify_all()
                continue
            except (OSError, websocket.WebSocketException) as exc:
                if not self._closing:
                    log.info("connection lost: %s", exc or type(exc).__name__)
                return None
            awaiting_pong = False
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                info = parse_close(data)
                if not self._closing:
                    log.info("server closed the connection: %s %s", info.code, info.reason)
                return info
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        try:
            frame = decode_server_frame(data)
            if isinstance(frame, LinkResume | LinkAck):
                self._link_frame(frame)
                return
            n = getattr(frame, "n", 0)
            if n and not self._first_time(n):
                log.debug("dropping a resent %s frame (%d)", type(frame).__name__, n)
                return
        except FrameError as exc:
            log.warning("ignoring a malformed frame from the server: %s", exc)
            try:
                self.send(AgentError(message=f"malformed frame ignored: {exc}", fatal=False))
            except RuntimeError as send_exc:
                log.warning("cannot report the malformed frame: %s", send_exc)
            return
        try:
            self._on_frame(frame)
        except Exception:
            log.exception("handling a %s frame failed", type(frame).__name__)
        if n:
            with self._cond:
                if self._ack_at is None:
                    self._ack_at = time.monotonic() + self._config.ack_delay
                    self._cond.notify_all()

    def _first_time(self, n: int) -> bool:
        """True for a server frame number not seen yet (the reader thread alone calls this)."""
        with self._cond:
            if n <= self._server_received:
                return False
            self._server_received = n
            return True

    def _link_frame(self, frame: LinkResume | LinkAck) -> None:
        with self._cond:
            self._sent.acked(frame.received)
            if isinstance(frame, LinkResume):
                self._resend = deque(self._sent.pending())
                self._resumed = True
                if self._resend:
                    log.info("resending %d frames the server did not have", len(self._resend))
            self._cond.notify_all()

    def _stop(self, info: CloseInfo) -> None:
        with self._cond:
            if self.stop_info is not None:
                return
            self.stop_info = info
            self._writer_exit = True
            dropped = self._outbox.clear()
            self._cond.notify_all()
        log.warning(
            "connection stopped for good: %s %s (%s)%s",
            info.code,
            info.reason,
            STOP_CLOSE_CODES.get(info.code or 0, "server shutdown"),
            f"; {dropped} frames not sent" if dropped else "",
        )
        self.stopped.set()
        if self._on_stopped is not None:
            try:
                self._on_stopped(info)
            except Exception:
                log.exception("on_stopped callback failed")

    # ---------------------------------------------------------------- writing

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                action = self._next_action_locked()
            if action is None:
                return
            ws, entry = action
            self._send_now(ws, entry)

    def _next_action_locked(self) -> tuple[websocket.WebSocket, Entry | bytes | None] | None:
        """Wait for something to send: (socket, entry), (socket, None) to ping, None to exit."""
        while True:
            if self._writer_exit:
                return None
            ws, wait, ack_wait = self._ws, None, None
            if ws is not None and not self._inflight:
                if self._ping_wanted:
                    self._ping_wanted = False
                    self._inflight = True
                    return ws, None
                if self._ack_at is not None:
                    ack_wait = self._ack_at - time.monotonic()
                    if ack_wait <= 0:
                        self._ack_at = None
                        self._inflight = True
                        return ws, encode_bytes(AgentLinkAck(received=self._server_received))
                if not self._resumed:
                    self._cond.wait(ack_wait)
                    continue
                if self._resend:
                    self._inflight = True
                    return ws, self._resend.popleft()
                entry, wait = self._outbox.take(time.monotonic(), flush=self._draining)
                if entry is not None:
                    self._inflight = True
                    return ws, entry
            self._cond.wait(_sooner(wait, ack_wait))


def _sooner(a: float | None, b: float | None) -> float | None:
    """The shorter of two waits (None: no limit)."""
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def _abort(ws: websocket.WebSocket) -> None:
    """Shut the socket down so a reader blocked on it wakes up at once."""
    sock = ws.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _close_socket(ws: websocket.WebSocket) -> None:
    sock, ws.sock = ws.sock, None
    ws.connected = False
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
