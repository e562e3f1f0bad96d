"""The server-side WebSocket on the I/O loop, over real sockets on 127.0.0.1:
concurrent senders, a reader that does not read, a full socket, batched reads,
sends after the close, keep-alive timers."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from werkzeug.serving import make_server

from tests.waiting import wait_until
from transport.ioloop import IOLoop
from transport.server import RequestHandler
from transport.websocket import Limits, WebSocket, accept, text_frame

SENDERS = 4
FRAMES = 3000


class _Server:
    """A werkzeug server whose upgrades become WebSockets on one IOLoop."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loop = IOLoop()
        self.loop.start()
        self.accepted: list[WebSocket] = []
        self.received: list[list[str | bytes]] = []
        #: (connection index, message) in the order the loop handed them on, and a
        #: test's hook that runs on the loop's thread at each hand-on.
        self.order: list[tuple[int, str | bytes]] = []
        self.on_delivery: Any = None
        self.closed: list[str] = []
        self.httpd = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=RequestHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.httpd.server_port}/"

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        sock, conn = accept(environ)
        index = len(self.accepted)

        def delivered(messages: list[str | bytes]) -> None:
            self.received.append(messages)
            self.order.extend((index, message) for message in messages)
            if self.on_delivery is not None:
                self.on_delivery(index)

        ws = WebSocket(self.loop, sock, conn, self.limits, delivered, self.closed.append)
        self.accepted.append(ws)
        ws.start()
        environ["berth.websocket"] = True
        raise ConnectionError("handed to the loop")

    def connect(self) -> tuple[websocket.WebSocket, WebSocket]:
        before = len(self.accepted)
        client = websocket.create_connection(self.url, timeout=30)
        wait_until(lambda: len(self.accepted) > before, what="the server side")
        return client, self.accepted[before]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.loop.stop()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(
        outbox_bytes: int = 1 << 30,
        max_message_size: int = 1 << 20,
        ping_interval: float | None = None,
        close_timeout: float = 5.0,
        messages_per_turn: int = 64,
    ) -> _Server:
        limits = Limits(outbox_bytes, max_message_size, ping_interval, close_timeout, messages_per_turn)
        servers.append(_Server(limits))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_concurrent_senders_to_a_slow_reader_deliver_every_frame_intact_and_in_order(serve):
    server = serve()
    client, ws = server.connect()

    def sender(n: int) -> None:
        for i in range(FRAMES):
            assert ws.send_utf8(f"{n}:{i}:{'x' * 1000}".encode())

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    # Read only once the socket is full and the loop has taken over the writing.
    wait_until(lambda: ws.backlog_bytes() > 0, what="a backlog")
    last = [-1] * SENDERS
    for _ in range(SENDERS * FRAMES):
        n, i, _ = str(client.recv()).split(":")
        assert int(i) == last[int(n)] + 1
        last[int(n)] = int(i)
    for thread in threads:
        thread.join(30)
    assert last == [FRAMES - 1] * SENDERS
    wait_until(lambda: ws.backlog_bytes() == 0, what="the outbox drained")


def test_a_peer_that_does_not_read_meets_the_byte_budget_instead_of_blocking_the_sender(serve):
    server = serve(outbox_bytes=1 << 20)
    client, ws = server.connect()
    accepted = 0
    for _ in range(100_000):  # up to 1 GB if nothing stopped it
        if not ws.send_utf8(b"y" * 10_000):
            break
        accepted += 1
    assert accepted < 2_000  # the kernel's buffers plus 1 MB, not the 1 GB offered
    assert ws.backlog_bytes() <= 1 << 20
    ws.close(4008, "too slow", abandon=True)
    assert ws.backlog_bytes() < 20_000  # what was queued is dropped at once, the memory freed
    client.close()


def test_a_send_on_a_closing_or_closed_connection_is_refused_without_raising(serve):
    server = serve(close_timeout=0.2)
    client, ws = server.connect()
    ws.close(1000, "bye")
    assert ws.send_utf8(b"after close began") is False
    wait_until(lambda: ws.closed, what="the close (the client never answers)")
    assert ws.send_utf8(b"after the socket is gone") is False
    ws.close(1000, "again")  # idempotent
    client.close()


def test_a_peer_closing_first_is_answered_and_reported_with_its_code(serve):
    server = serve()
    client, ws = server.connect()
    client.close(status=4321, reason=b"done here")
    wait_until(lambda: server.closed, what="the close reported")
    assert server.closed == ["closed by peer (4321 done here)"]
    assert ws.send_utf8(b"late") is False


def test_frames_that_arrive_in_one_read_reach_the_handler_as_one_call(serve):
    server = serve()
    raw = socket.create_connection(("127.0.0.1", server.httpd.server_port))
    raw.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    wait_until(lambda: server.accepted, what="the server side")
    raw.sendall(b"".join(_masked_text(f"frame {i}".encode()) for i in range(50)))
    wait_until(lambda: sum(len(batch) for batch in server.received) == 50, what="50 frames")
    assert len(server.received) == 1
    assert server.received[0] == [f"frame {i}" for i in range(50)]
    raw.close()


def _unread(sock: socket.socket) -> int:
    """Bytes waiting in a socket's receive queue."""
    return int(struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0])


def test_a_frame_on_one_connection_is_handed_on_within_two_loop_turns_of_anothers_backlog(serve):
    server = serve(messages_per_turn=8)
    flooder, flooder_side = server.connect()
    quiet, quiet_side = server.connect()
    gate, held = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        held.set()
        gate.wait(30)

    server.loop.call_soon(hold_the_loop)
    assert held.wait(10)
    flood = b"".join(_masked_text(f"f{i}".encode()) for i in range(20_000))  # 240 KB of tiny frames
    sender = threading.Thread(target=flooder.sock.sendall, args=(flood,), daemon=True)
    sender.start()
    wait_until(lambda: _unread(flooder_side._sock) >= 32 * 1024, what="a backlog in the flooder's socket")
    seen: dict[str, int] = {}

    def on_delivery(index: int) -> None:  # on the loop: the quiet peer speaks once the flood is being read
        if index == 0 and "sent" not in seen:
            seen["sent"] = server.loop.wakeups
            quiet.sock.sendall(_masked_text(b"quiet"))
            deadline = time.monotonic() + 10
            while not _unread(quiet_side._sock) and time.monotonic() < deadline:
                pass
        if index == 1:
            seen["delivered"] = server.loop.wakeups

    server.on_delivery = on_delivery
    gate.set()
    wait_until(lambda: len(server.order) == 20_001, timeout=30, what="every frame")
    sender.join(10)
    position = server.order.index((1, "quiet"))
    flood_before = position
    assert flood_before <= 4 * 8, f"the quiet frame waited behind {flood_before} frames of the backlog"
    assert seen["delivered"] - seen["sent"] <= 2  # loop turns
    assert len(server.order) - position - 1 > 10_000  # most of the backlog was still to come
    assert [m for i, m in server.order if i == 0] == [f"f{i}" for i in range(20_000)]  # all, in order


def test_a_message_over_the_size_limit_closes_the_connection_with_1009(serve):
    server = serve(max_message_size=1000)
    client, _ws = server.connect()
    client.send("z" * 5000)
    opcode, data = client.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1009
    assert server.received == []


def test_a_silent_peer_is_pinged_by_a_loop_timer_and_closed_when_it_stays_silent(serve):
    server = serve(ping_interval=0.2)
    raw = socket.create_connection(("127.0.0.1", server.httpd.server_port))
    raw.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    raw.settimeout(5)
    assert raw.recv(2)[0] == 0x89  # a ping, unanswered
    wait_until(lambda: server.closed == ["ping timeout"], what="the ping timeout")
    raw.close()


def test_a_peer_answering_pings_stays_connected(serve):
    server = serve(ping_interval=0.1)
    client, ws = server.connect()
    for _ in range(5):  # websocket-client answers each ping while it reads
        client.settimeout(5)
        opcode, _ = client.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PING
        client.pong(b"")
    assert not ws.closed and server.closed == []
    client.close()


def test_idle_connections_never_wake_the_loop(serve):
    server = serve(ping_interval=None)
    clients = [server.connect()[0] for _ in range(50)]
    wait_until(lambda: server.loop.registered() == 50, what="50 connections on the loop")
    before = server.loop.wakeups
    time.sleep(0.5)  # an observation window: nothing is awaited, nothing may happen
    assert server.loop.wakeups == before
    for client in clients:
        client.close()


@pytest.mark.parametrize("size", [0, 5, 125, 126, 200, 65535, 65536, 100_000])
def test_hand_madetext_frames_are_byte_for_byte_what_wsproto_makes(size):
    from wsproto.frame_protocol import FrameProtocol

    payload = ("é" * size).encode()[:size]  # multi-byte UTF-8, cut at any byte count
    text = payload.decode(errors="ignore").encode()
    assert text_frame(text) == bytes(FrameProtocol(False, []).send_data(text.decode(), True))


def _masked_text(payload: bytes) -> bytes:
    """A client's frame (masked), as a client library would write it."""
    mask = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body
