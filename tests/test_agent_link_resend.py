"""Server -> agent frames survive a dropped link, exactly once (issue 9).

A real server on 127.0.0.1 (stub container runtime), Berth's real agent
connection (``agent.connection.AgentConnection``), and a TCP proxy between
them that loses the bytes in flight when the link dies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import websocket

from actors.secret import Secret
from agent.connection import AgentConnection, ConnectionConfig
from tests.rest_client import rest_call
from tests.served import start_stub_server
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until
from transport.protocol import Ready, ServerToAgent, UserMessage
from transport.serve import RunningServer

API_TOKEN = "link-resend-api-token-0123456789abcdef"


@pytest.fixture
def running(base_config) -> Iterator[RunningServer]:
    server = start_stub_server(
        replace(base_config, reconnect_grace=30), API_TOKEN, "sk-ant-oat01-link-resend-test-token"
    )
    yield server
    server.stop()


class Agent:
    """Berth's agent connection, recording every frame it hands on."""

    def __init__(self, server: RunningServer, sid: str, proxy: TcpProxy) -> None:
        self.frames: list[ServerToAgent] = []
        self._lock = threading.Lock()
        token = server.berth.lookup(sid).agent_token.reveal()
        self.conn = AgentConnection(
            f"ws://127.0.0.1:{proxy.port}/agent/{sid}",
            lambda: token,
            self._on_frame,
            ConnectionConfig(backoff_base=0.02, backoff_cap=0.2),
        )
        self.conn.start()

    def _on_frame(self, frame: ServerToAgent) -> None:
        with self._lock:
            self.frames.append(frame)

    def prompts(self) -> list[str]:
        with self._lock:
            return [f.content for f in self.frames if isinstance(f, UserMessage)]


def call(server: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return rest_call(server.server.http_url, API_TOKEN, method, path, body)


def status(server: RunningServer, sid: str) -> str:
    return str(call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"])


@pytest.fixture
def linked(running) -> Iterator[tuple[RunningServer, str, TcpProxy, Agent]]:
    code, body = call(running, "POST", "/api/sessions", {"name": "resend", "runner": "builtin"})
    assert code == 201, body
    sid = body["session"]["id"]
    wait_until(lambda: running.runtime.by_session(sid), what="container")
    proxy = TcpProxy(running.server.port)
    agent = Agent(running, sid, proxy)
    agent.conn.send(Ready())
    wait_until(lambda: status(running, sid) == "idle", what="idle")
    try:
        yield running, sid, proxy, agent
    finally:
        agent.conn.close(timeout=2)
        proxy.close()


def _prompt(server: RunningServer, sid: str, content: str) -> None:
    code, body = call(server, "POST", f"/api/sessions/{sid}/message", {"content": content})
    assert code == 202, body


def test_a_user_message_written_as_the_agent_link_drops_reaches_the_agent_exactly_once(linked):
    server, sid, proxy, agent = linked
    proxy.swallow("down")  # the server's writes succeed; the agent gets none of them
    _prompt(server, sid, "lost in flight")
    wait_until(lambda: b"lost in flight" in proxy.swallowed["down"], what="the server wrote the message")
    assert agent.prompts() == []
    proxy.cut()
    wait_until(lambda: agent.prompts() == ["lost in flight"], what="the message resent after the reconnect")
    _prompt(server, sid, "after")
    wait_until(lambda: len(agent.prompts()) >= 2, what="the next message")
    assert agent.prompts() == ["lost in flight", "after"]  # in order, no duplicate
    assert agent.conn.connections == 2


def test_a_message_the_agent_got_but_whose_acknowledgement_was_lost_is_not_handed_on_twice(linked):
    server, sid, proxy, agent = linked
    proxy.swallow("up")  # the agent's link_ack never reaches the server
    _prompt(server, sid, "got it")
    wait_until(lambda: agent.prompts() == ["got it"], what="the message")
    wait_until(lambda: proxy.swallowed["up"], what="the agent's link_ack (masked on the wire)")
    proxy.cut()
    wait_until(lambda: agent.conn.connections == 2 and agent.conn.connected, what="the reconnect")
    _prompt(server, sid, "next")
    wait_until(lambda: len(agent.prompts()) >= 2, what="the next message")
    assert agent.prompts() == ["got it", "next"]


def test_the_real_agent_runs_a_prompt_lost_in_flight_exactly_once_after_its_link_drops(running, tmp_path):
    code, body = call(running, "POST", "/api/sessions", {"name": "real agent", "runner": "builtin"})
    assert code == 201, body
    sid = body["session"]["id"]
    wait_until(lambda: running.runtime.by_session(sid), what="container")
    proxy = TcpProxy(running.server.port)
    agent = _host_agent(tmp_path, f"ws://127.0.0.1:{proxy.port}", sid, running.berth.lookup(sid).agent_token)
    try:
        wait_until(lambda: status(running, sid) == "idle", timeout=30, what="the agent ready")
        proxy.swallow("down")
        _prompt(running, sid, "lost in flight")
        wait_until(lambda: b"lost in flight" in proxy.swallowed["down"], what="the server wrote the prompt")
        proxy.cut()

        def replies() -> list[str]:
            messages = call(running, "GET", f"/api/sessions/{sid}")[1]["messages"]
            return [m["content"] for m in messages if m["kind"] == "assistant"]

        wait_until(lambda: replies(), timeout=30, what="the turn to run after the reconnect")
        _prompt(running, sid, "after")
        wait_until(lambda: len(replies()) >= 2, timeout=30, what="the next turn")
        assert replies() == ["You said: lost in flight", "You said: after"]  # each turn once
        assert status(running, sid) == "idle"
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        proxy.close()


def _host_agent(home: Path, server_url: str, sid: str, token: Secret) -> subprocess.Popen[bytes]:
    """Berth's agent as a process on the host (builtin runner), as the benchmarks run it."""
    for part in ("secrets", "workspace"):
        (home / part).mkdir(exist_ok=True)
    env = {
        **os.environ,
        "BERTH_SESSION_ID": sid,
        "BERTH_SERVER_URL": server_url,
        "BERTH_SESSION_TOKEN": token.reveal(),
        "BERTH_RUNNER": "builtin",
        "BERTH_SECRETS_DIR": str(home / "secrets"),
        "BERTH_WORKSPACE": str(home / "workspace"),
        "CLAUDE_CONFIG_DIR": str(home / "claude"),
        "HOME": str(home),
        "BERTH_BACKOFF_CAP": "0.2",
    }
    repo = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-m", "agent"], cwd=repo, env=env)


def test_an_agent_upgrade_with_a_malformed_received_header_is_refused_with_a_clear_400(running):
    code, body = call(running, "POST", "/api/sessions", {"name": "bad", "runner": "builtin"})
    assert code == 201, body
    sid = body["session"]["id"]
    token = running.berth.lookup(sid).agent_token.reveal()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"{running.server.ws_url}/agent/{sid}",
            header=[f"Authorization: Bearer {token}", "X-Berth-Received: -3"],
            timeout=10,
        )
    assert refused.value.status_code == 400
    assert b"X-Berth-Received" in (refused.value.resp_body or b"")
