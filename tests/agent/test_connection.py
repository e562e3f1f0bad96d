"""The agent's WebSocket client against a real server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.connection import AgentConnection, ConnectionConfig, ConnectionStopped
from agent.outbox import OutboxFull
from agent.reconnect import CloseInfo, agent_url, backoff_delay
from tests.agent.helpers import wait_until
from tests.agent.ws_server import AgentServer, ServerConn
from transport.protocol import AgentError, LinkAck, Result, ServerToAgent, SetupProgress, Stream, UserMessage

pytestmark = pytest.mark.timeout(30)

FAST = ConnectionConfig(backoff_base=0.01, backoff_cap=0.1, coalesce_window=0.002)


class Client:
    """An AgentConnection plus what it delivered and how it stopped."""

    def __init__(
        self, server: AgentServer, config: ConnectionConfig = FAST, token: Callable[[], str] | None = None
    ):
        self.frames: list[ServerToAgent] = []
        self.stopped_with: list[CloseInfo] = []
        self._cond = threading.Condition()
        self.conn = AgentConnection(
            agent_url(server.url, "sess-1"),
            token or (lambda: "session-secret"),
            self._on_frame,
            config,
            on_stopped=self.stopped_with.append,
        )

    def _on_frame(self, frame: ServerToAgent) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def wait_frames(self, count: int, timeout: float = 5.0) -> list[ServerToAgent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.frames) >= count, timeout), self.frames
            return list(self.frames)


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(server: AgentServer, **kwargs: Any) -> Client:
        client = Client(server, **kwargs)
        made.append(client)
        client.conn.start()
        return client

    yield make
    for client in made:
        client.conn.close(timeout=1)


def progress(n: int) -> list[str]:
    return [f"step {i}" for i in range(n)]


def test_the_agent_connects_to_its_session_path_with_the_session_token_as_bearer(server, clients):
    clients(server)
    conn = server.wait_connection(0)
    assert conn.path == "/agent/sess-1"
    assert conn.authorization == "Bearer session-secret"


def test_frames_queued_before_the_server_is_up_arrive_in_order_once_it_is(clients):
    server = AgentServer()
    client = clients(server)
    for message in progress(50):
        client.conn.send(SetupProgress(message=message))
    server.start()
    try:
        frames = server.wait_connection(0).wait_count("setup_progress", 50)
        assert [f["message"] for f in frames] == progress(50)
    finally:
        server.stop()


def test_frames_sent_while_the_server_is_down_arrive_in_order_when_it_comes_back(clients):
    server = AgentServer().start()
    client = clients(server)
    server.wait_connection(0)
    server.stop()
    # "While the server is down" means once the agent knows it: a frame written
    # into the socket in the instant the server closes it has no ack to lose.
    wait_until(lambda: not client.conn.connected, what="the agent to notice the server is gone")
    for message in progress(30):
        client.conn.send(SetupProgress(message=message))
    server.start()
    try:
        frames = server.wait_connection(1).wait_count("setup_progress", 30)
        assert [f["message"] for f in frames] == progress(30)
        assert server.connections[0].of("setup_progress") == []
    finally:
        server.stop()


def test_after_a_dropped_connection_the_agent_reconnects_with_a_freshly_read_token(server, clients):
    tokens = (f"token-{i}" for i in itertools.count())
    client = clients(server, token=lambda: next(tokens))
    first = server.wait_connection(0)
    first.drop()
    second = server.wait_connection(1)
    assert (first.authorization, second.authorization) == ("Bearer token-0", "Bearer token-1")
    client.conn.send(SetupProgress(message="after"))
    assert second.wait_for("setup_progress")["message"] == "after"


@pytest.mark.parametrize(
    ("code", "reason"), [(4001, "auth"), (4003, "replaced"), (4004, "over"), (1000, "shutdown")]
)
def test_a_close_that_means_stop_ends_the_connection_without_reconnecting(server, clients, code, reason):
    server.on_connect = lambda conn: conn.close(code, reason)
    client = clients(server)
    assert client.conn.stopped.wait(5)
    assert client.conn.join(5), "the connection threads did not end"
    assert client.stopped_with == [CloseInfo(code, reason)]
    assert server.handshakes == 1
    with pytest.raises(ConnectionStopped):
        client.conn.send(SetupProgress(message="too late"))


@pytest.mark.parametrize(
    ("code", "reason"), [(1001, "going away"), (1011, "oops"), (4008, "behind"), (1000, "bye")]
)
def test_any_other_close_is_followed_by_a_reconnect(server, clients, code, reason):
    closes = iter([True])
    server.on_connect = lambda conn: conn.close(code, reason) if next(closes, False) else None
    client = clients(server)
    server.wait_connection(1)
    assert not client.conn.stopped.is_set()


@pytest.mark.parametrize(("status", "code"), [(401, 4001), (404, 4004), (410, 4004)])
def test_a_refused_handshake_that_means_stop_ends_the_connection(server, clients, status, code):
    server.reject_status = status
    client = clients(server)
    assert client.conn.stopped.wait(5)
    assert client.conn.join(5)
    assert [info.code for info in client.stopped_with] == [code]
    assert server.handshakes == 1


def test_a_server_that_answers_503_is_retried_until_it_accepts(server, clients):
    server.reject_status = 503
    clients(server)
    with server._cond:
        assert server._cond.wait_for(lambda: server.handshakes >= 3, 5)
    server.reject_status = None
    server.wait_connection(0)


def test_a_malformed_server_frame_is_reported_back_and_the_connection_stays_up(server, clients):
    client = clients(server)
    conn = server.wait_connection(0)
    conn.send("this is not json")
    conn.send({"type": "no_such_frame"})
    conn.send(UserMessage(content="hello"))
    errors = conn.wait_count("error", 2)
    assert all(e["fatal"] is False and "malformed frame" in e["message"] for e in errors)
    assert client.wait_frames(1) == [UserMessage(content="hello")]
    assert len(server.connections) == 1


def test_a_turns_first_token_is_sent_at_once_and_the_tokens_after_it_merged_in_order(server, clients):
    client = clients(server, config=ConnectionConfig(coalesce_window=5.0))
    conn = server.wait_connection(0)
    client.conn.send(Stream(message_id="m1", tokens=["t0"]))
    assert conn.wait_for("stream", timeout=2)["tokens"] == ["t0"]  # long before the 5 s window
    for i in range(1, 100):
        client.conn.send(Stream(message_id="m1", tokens=[f"t{i}"]))
    client.conn.send(Result(result="done"))
    conn.wait_for("result")
    kinds = [f["type"] for f in conn.received]
    assert kinds == ["stream", "stream", "result"]
    assert conn.received[1]["tokens"] == [f"t{i}" for i in range(1, 100)]


def test_a_lone_stream_frame_behind_a_burst_is_sent_once_the_window_has_passed(server, clients):
    client = clients(server, config=ConnectionConfig(coalesce_window=0.5))
    conn = server.wait_connection(0)
    client.conn.send(Stream(message_id="m1", tokens=["first"]))
    client.conn.send(Stream(message_id="m1", tokens=["only"]))
    wait_until(lambda: sum(len(f.get("tokens", [])) for f in conn.received) == 2, timeout=3)
    assert [t for f in conn.received for t in f["tokens"]] == ["first", "only"]


def test_close_sends_what_is_queued_and_then_closes_with_1000(server, clients):
    client = clients(server, config=ConnectionConfig(coalesce_window=5.0))
    conn = server.wait_connection(0)
    client.conn.send(Stream(message_id="m1", tokens=["held back"]))
    client.conn.close(timeout=5)
    assert conn.closed.wait(5)
    assert conn.of("stream")[0]["tokens"] == ["held back"]
    assert conn.close_code == 1000


def test_queueing_more_than_the_buffer_limit_raises_a_clear_error(clients):
    server = AgentServer()  # never started
    client = clients(server, config=ConnectionConfig(max_buffered_frames=10, backoff_base=0.5))
    for message in progress(10):
        client.conn.send(SetupProgress(message=message))
    with pytest.raises(OutboxFull, match="limit 10"):
        client.conn.send(AgentError(message="one too many"))


def test_frames_handled_by_the_agent_arrive_in_the_order_the_server_sent_them(server, clients):
    client = clients(server)
    conn: ServerConn = server.wait_connection(0)
    for i in range(20):
        conn.send(UserMessage(content=str(i)))
    frames = client.wait_frames(20)
    assert [f.content for f in frames if isinstance(f, UserMessage)] == [str(i) for i in range(20)]


class SilentServer:
    """Completes the WebSocket handshake, then never reads or answers again."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            request = b""
            while b"\r\n\r\n" not in request:
                request += sock.recv(4096)
            key = re.search(rb"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE)
            assert key is not None
            accept = base64.b64encode(hashlib.sha1(key.group(1) + self.GUID.encode()).digest())
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            with self._cond:
                self.accepted.append(sock)
                self._cond.notify_all()

    def wait_accepted(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= count, timeout)

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()


def test_a_server_that_stops_answering_pings_is_given_up_on_and_reconnected():
    server = SilentServer()
    config = ConnectionConfig(backoff_base=0.01, backoff_cap=0.05, ping_interval=0.1)
    conn = AgentConnection(agent_url(server.url, "sess-1"), lambda: "t", lambda frame: None, config)
    conn.start()
    try:
        assert server.wait_accepted(2), "the agent never gave up on the silent connection"
    finally:
        conn.close(timeout=1)
        server.close()


class BrokenSocket:
    """A connection whose every send fails, as after a silent drop."""

    sock = None

    def send(self, data: bytes, opcode: int) -> None:
        raise OSError("broken pipe")


def test_a_frame_whose_send_failed_is_sent_first_on_the_next_connection(server):
    conn = AgentConnection(agent_url(server.url, "sess-1"), lambda: "t", lambda frame: None, FAST)
    conn._ws = BrokenSocket()  # type: ignore[assignment]
    conn._resumed = True  # as if the broken socket had been resumed
    conn.send(SetupProgress(message="first"))
    conn.send(SetupProgress(message="second"))
    conn._writer.start()  # only the writer: its send fails and the link is marked down
    wait_until(lambda: conn._ws is None, what="the writer to give up on the broken socket")
    conn._reader.start()
    try:
        frames = server.wait_connection(0).wait_count("setup_progress", 2)
        assert [f["message"] for f in frames] == ["first", "second"]
    finally:
        conn.close(timeout=1)


def test_the_backoff_is_jittered_below_a_doubling_ceiling_that_stops_at_the_cap():
    for failures, ceiling in [(0, 0.2), (1, 0.4), (3, 1.6), (10, 10.0), (500, 10.0)]:
        delays = [backoff_delay(failures, 0.2, 10.0) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2  # spread, not fixed


def test_a_resent_server_frame_is_handed_on_once_acknowledged_and_named_in_the_next_upgrade(server, clients):
    client = clients(server)
    conn: ServerConn = server.wait_connection(0)
    assert conn.hello_received == "0"
    for n, text in ((1, "one"), (1, "one"), (2, "two")):
        conn.send(UserMessage(content=text, n=n))
    conn.send(UserMessage(content="unnumbered"))  # n = 0: always handed on, never acknowledged
    frames = client.wait_frames(3)
    assert [f.content for f in frames if isinstance(f, UserMessage)] == ["one", "two", "unnumbered"]
    conn.wait_for("link_ack", lambda f: f["received"] == 2)
    assert all(not f.get("n") for f in conn.of("link_ack"))  # acks are not numbered themselves
    conn.drop()
    again: ServerConn = server.wait_connection(1)
    assert again.hello_received == "2"


def test_closing_waits_until_the_server_acknowledged_the_last_frame(server, clients):
    """A fatal error is the agent's last frame before it exits: its container's exit
    must not reach the server before the frame itself."""
    server.ack_frames = False
    client = clients(server)
    conn = server.wait_connection(0)
    client.conn.send(AgentError(message="the runner cannot start", fatal=True))
    conn.wait_for("error")
    closer = threading.Thread(target=client.conn.close, kwargs={"timeout": 10})
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "close returned before the server acknowledged the error"
    conn.send(LinkAck(received=server.link_received))
    closer.join(5)
    assert not closer.is_alive()
