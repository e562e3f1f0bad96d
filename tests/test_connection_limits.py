"""Connections against a real server on 127.0.0.1: thousands held by one loop,
limits per address and in all, the auth timeout, and outboxes bounded by bytes."""

from __future__ import annotations

import gc
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import websocket

from tests.rest_client import rest_call
from tests.served import start_stub_server
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.admission import raise_fd_limit
from transport.serve import RunningServer

API_TOKEN = "test-api-token-0123456789abcdef"
MANY = 2_000


def _start(config: Any) -> RunningServer:
    return start_stub_server(config, API_TOKEN, "sk-ant-oat01-limits-test-token")


@pytest.fixture
def make_server(base_config) -> Iterator[Any]:
    started: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        started.append(_start(replace(base_config, **overrides)))
        return started[-1]

    yield make
    for server in started:
        server.stop()


def _client(server: RunningServer, timeout: float = 10) -> WsPeer:
    return WsPeer(f"{server.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"], timeout)


def _agent_link_closing(server: RunningServer) -> bool:
    """The server began closing its agent connection (or already closed it)."""
    links = [c for c in list(server.server.connections._open) if c.id.startswith("agent-")]
    return all(link.ws.closing for link in links)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _http_answer(port: int, request: bytes = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_one_server_holds_two_thousand_websockets_without_a_thread_for_each(make_server):
    raise_fd_limit(MANY * 2 + 512)
    server = make_server()
    threads_before = threading.active_count()
    clients = [_client(server) for _ in range(MANY)]
    try:
        wait_until(lambda: server.server.connections.count() == MANY, what=f"{MANY} connections")
        # Client and server ends live in this process: the server's sockets sit past fd 1024.
        assert max(c.ws.sock.fileno() for c in clients) > 1024
        for client in (clients[0], clients[-1]):
            client.send({"type": "subscribe", "sessionId": "nope", "requestId": "r"})
            answer = client.recv()
            assert answer["type"] == "protocol_error" and answer["requestId"] == "r"
        # The server's own threads did not grow with its connections.
        assert threading.active_count() - threads_before < 20
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: server.server.connections.count() == 0, what="every connection closed")


def test_connections_over_the_per_address_limit_get_a_503_naming_it(make_server):
    server = make_server(max_connections_per_address=3)
    clients = [_client(server) for _ in range(3)]
    answer = _http_answer(server.server.port)
    assert answer.startswith(b"HTTP/1.1 503") and b"max_connections_per_address" in answer
    with pytest.raises(websocket.WebSocketBadStatusException):
        _client(server)
    clients[0].close()
    wait_until(lambda: server.server.admission.count() == 2, what="the closed one counted out")
    assert _http_answer(server.server.port).startswith(b"HTTP/1.1 200")
    for client in clients[1:]:
        client.close()


def test_connections_over_the_total_limit_get_a_503_naming_it(make_server):
    server = make_server(max_connections=2)
    clients = [_client(server) for _ in range(2)]
    answer = _http_answer(server.server.port)
    assert answer.startswith(b"HTTP/1.1 503") and b"max_connections" in answer
    for client in clients:
        client.close()
    wait_until(lambda: server.server.admission.count() == 0, what="all counted out")


@pytest.mark.parametrize("sent", [b"", b"GET /ws HTTP/1.1\r\nHost: x\r\n"])
def test_a_half_open_or_unauthenticated_socket_is_closed_within_the_auth_timeout(make_server, sent):
    server = make_server(auth_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.server.port)) as sock:
        sock.sendall(sent)
        sock.settimeout(5)  # far beyond the 0.3 s the server allows
        assert sock.recv(4096) == b""  # closed by the server, nothing answered
    wait_until(lambda: server.server.admission.count() == 0, what="the socket counted out")


def test_never_reading_clients_are_cut_off_at_their_byte_budget_and_memory_stays_flat(make_server):
    """Three subscribers that never read and one that does, a session streaming 100 MB."""
    # The session's own event logs are bounded by count: keep them short, to see the transport.
    server = make_server(
        client_outbox_bytes=2 << 20, event_log_limit=50, sessions_api_event_limit=50, agent_byte_rate=1e12
    )
    status, body = rest_call(server.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "big"})
    assert status == 201, body
    sid = body["session"]["id"]
    wait_until(lambda: server.runtime.by_session(sid), what="container")
    token = server.berth.lookup(sid).agent_token.reveal()
    agent = WsPeer(f"{server.server.ws_url}/agent/{sid}", [f"Authorization: Bearer {token}"])
    agent.send({"type": "ready"})
    wait_until(lambda: server.berth.get_session(sid).info.status.value == "idle", what="idle")
    readers = []
    for _ in range(4):
        reader = _client(server, timeout=60)
        reader.send({"type": "subscribe", "sessionId": sid, "requestId": "s"})
        reader.recv_until(lambda f: f["type"] == "ack")  # subscribed; three of them read no more
        readers.append(reader)
    gc.collect()
    before = _rss_mb()
    rss = [before]
    received = 0
    for done in range(1, 101):  # 16 frames of one ~1 MB message a round, 104 MB in all
        chunk = json.dumps({"type": "stream", "messageId": f"m{done}", "tokens": ["x" * 65_000]})
        for _ in range(16):
            agent.send_raw(chunk)
        # The reading client keeps up (it reads each round); the three others read nothing.
        while received < done * 16 * 65_000:
            frame = readers[3].recv(timeout=60)
            if frame["type"] == "stream":
                received += sum(len(t) for t in frame["tokens"])
        rss.append(_rss_mb())
    assert received == 1_600 * 65_000  # every byte, in order, to the one that reads
    closes = [reader.wait_closed(timeout=60) for reader in readers[:3]]
    assert all(code == 4008 and "resubscribe" in reason for code, reason in closes)
    gc.collect()
    rss.append(_rss_mb())
    growth = f"RSS {before:.0f} MB before, peak {max(rss):.0f} MB, {rss[-1]:.0f} MB after"
    assert max(rss) - before < 60, growth
    assert server.berth.get_session(sid).info.status.value == "idle"


def test_an_agent_that_stops_reading_is_closed_at_its_byte_budget_and_the_session_lives_on(make_server):
    # An unacknowledged-frames budget above the 15 MB, so no prompt is refused before the close.
    server = make_server(agent_outbox_bytes=256 * 1024, reconnect_grace=30, agent_unacked_bytes=64 << 20)
    status, body = rest_call(server.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "deaf"})
    assert status == 201, body
    sid = body["session"]["id"]
    wait_until(lambda: server.runtime.by_session(sid), what="container")
    token = server.berth.lookup(sid).agent_token.reveal()
    agent = WsPeer(f"{server.server.ws_url}/agent/{sid}", [f"Authorization: Bearer {token}"])
    agent.send({"type": "ready"})
    wait_until(lambda: server.berth.get_session(sid).info.status.value == "idle", what="idle")
    client = _client(server)
    prompt = "p" * 50_000
    for i in range(300):  # 15 MB for an agent that reads nothing meanwhile
        client.send({"type": "send_prompt", "sessionId": sid, "content": f"{i} {prompt}"})
    # The agent stays deaf until the server gives up on it: reading for the close frame any
    # earlier lets it keep up with a session the store's backpressure slows to the disk's pace,
    # and an agent that reads is rightly never cut off (with the store's default 4 MiB queue
    # this test once sometimes waited for a close that never came).
    wait_until(lambda: _agent_link_closing(server), timeout=60, what="the server to give up on the agent")
    code, reason = agent.wait_closed(timeout=60)
    assert code == 4008 and "byte budget" in reason
    wait_until(
        lambda: server.berth.get_session(sid).info.status.value == "reconnecting",
        what="the session waiting for its agent",
    )


def test_accepting_when_no_connection_is_pending_returns_at_once(make_server):
    """serve_forever accepts after select said "readable"; a connection gone from
    the queue in between must not block accept(), and shutdown() behind it, for good."""
    server = make_server()
    httpd = server.server._httpd
    accepting = threading.Thread(target=httpd._handle_request_noblock, daemon=True)
    accepting.start()
    accepting.join(5)
    assert not accepting.is_alive(), "accept() blocked with no connection pending"
