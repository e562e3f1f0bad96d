"""Real everything: the server, a real Docker container running the real agent
(built-in runner), and a real client WebSocket on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import docker
import pytest

from actors.config import BerthConfig
from actors.runtime import LABEL_SESSION
from actors.secret import Secret
from tests.rest_client import rest_call
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings

API_TOKEN = "e2e-api-token-0123456789abcdef"


class E2E:
    def __init__(self, running: RunningServer, client: docker.DockerClient) -> None:
        self.running = running
        self.docker = client

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return rest_call(self.running.server.http_url, API_TOKEN, method, path, body)

    def client(self) -> WsPeer:
        return WsPeer(f"{self.running.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"])

    def create(self, **body: Any) -> str:
        status, created = self.call("POST", "/api/sessions", {"name": "e2e", **body})
        assert status == 201, created
        return str(created["session"]["id"])

    def status(self, sid: str) -> str:
        code, body = self.call("GET", f"/api/sessions/{sid}")
        return str(body["session"]["status"]) if code == 200 else f"http {code}"

    def history(self, sid: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/sessions/{sid}")[1]["messages"])

    def container(self, sid: str) -> Any:
        found = self.docker.api.containers(all=True, filters={"label": f"{LABEL_SESSION}={sid}"})
        try:
            return self.docker.containers.get(found[0]["Id"]) if found else None
        except docker.errors.NotFound:  # removed between the listing and the look-up
            return None

    def subscribed_ready(self, sid: str) -> WsPeer:
        """A client subscribed to ``sid``, returned once the session is idle."""
        client = self.client()
        client.send({"type": "subscribe", "sessionId": sid})
        snapshot = client.recv()
        if snapshot["session"]["status"] not in ("idle", "error"):
            client.recv_until(
                lambda f: f["type"] == "session_update" and f["session"]["status"] in ("idle", "error"),
                timeout=90,
            )
        assert self.status(sid) == "idle", self.history(sid)
        return client


@contextmanager
def serving(config: BerthConfig, docker_runtime: Any) -> Iterator[E2E]:
    """A server of its own for a test that needs other settings than ``e2e``'s."""
    running = start_server(
        config, ServerSettings(port=0), api_token=Secret(API_TOKEN), runtime=docker_runtime
    )
    try:
        yield E2E(running, docker_runtime.client)
    finally:
        running.stop()


@pytest.fixture
def e2e(base_config: BerthConfig, docker_runtime: Any) -> Iterator[E2E]:
    config = replace(base_config, reconnect_grace=20, eviction_ttl=60, startup_timeout=90)
    running = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API_TOKEN),
        runtime=docker_runtime,
        environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-e2e-token-0123456789"},
    )
    yield E2E(running, docker_runtime.client)
    running.stop()
    left = docker_runtime.client.api.containers(
        all=True, filters={"label": f"berth.instance={config.instance_id}"}
    )
    assert not left, "containers left behind"


def test_a_session_becomes_ready_and_streams_a_reply_to_a_subscribed_client(e2e):
    sid = e2e.create()
    client = e2e.subscribed_ready(sid)
    client.send({"type": "send_prompt", "sessionId": sid, "content": "hello from the end to end test"})
    result, before = client.recv_until(lambda f: f["type"] == "result", timeout=30)
    streamed = "".join(t for f in before if f["type"] == "stream" for t in f["tokens"])
    assert "hello from the end to end test" in streamed
    assert result["isError"] is False
    assert any(f["type"] == "message" and f["message"]["kind"] == "assistant" for f in before)
    assert e2e.status(sid) == "idle"


def test_a_tool_approval_round_trips_through_the_client(e2e):
    sid = e2e.create()
    client = e2e.subscribed_ready(sid)
    client.send({"type": "send_prompt", "sessionId": sid, "content": "/tool Bash echo hi"})
    request = client.recv_until(lambda f: f["type"] == "approval_request", timeout=30)[0]
    assert request["approval"]["toolName"] == "Bash"
    assert e2e.call("GET", f"/api/sessions/{sid}")[1]["pendingApproval"]["id"] == request["approval"]["id"]
    client.send(
        {"type": "approve_tool", "sessionId": sid, "approvalId": request["approval"]["id"], "allow": True}
    )
    result, before = client.recv_until(lambda f: f["type"] == "result", timeout=30)
    assert any(f["type"] == "message" and f["message"]["kind"] == "tool_result" for f in before)
    assert result["isError"] is False
    assert e2e.call("GET", f"/api/sessions/{sid}")[1]["pendingApproval"] is None


def test_an_interrupt_stops_a_streaming_turn(e2e):
    sid = e2e.create()
    client = e2e.subscribed_ready(sid)
    client.send({"type": "send_prompt", "sessionId": sid, "content": "/slow 400"})
    client.recv_until(lambda f: f["type"] == "stream", timeout=30)
    client.send({"type": "interrupt", "sessionId": sid})
    result = client.recv_until(lambda f: f["type"] == "result", timeout=30)[0]
    assert result["isError"] is True
    wait_until(lambda: e2e.status(sid) == "idle", timeout=30, what="idle after the interrupt")


def test_a_killed_agent_process_reconnects_and_the_conversation_continues_with_nothing_lost(e2e):
    sid = e2e.create()
    client = e2e.subscribed_ready(sid)
    client.send({"type": "send_prompt", "sessionId": sid, "content": "first message"})
    client.recv_until(lambda f: f["type"] == "result", timeout=30)
    container = e2e.container(sid)
    killed = container.exec_run(["sh", "-c", "kill -9 $(cat /tmp/berth-agent-worker.pid)"])
    assert killed.exit_code == 0, killed.output
    client.recv_until(
        lambda f: f["type"] == "session_update" and f["session"]["status"] == "reconnecting", timeout=30
    )
    client.send({"type": "send_prompt", "sessionId": sid, "content": "second message"})
    _, before = client.recv_until(lambda f: f["type"] == "result", timeout=60)
    streamed = "".join(t for f in before if f["type"] == "stream" for t in f["tokens"])
    assert "second message" in streamed
    contents = [m["content"] for m in e2e.history(sid)]
    assert "first message" in contents and "second message" in contents
    assert e2e.status(sid) == "idle"


def test_docker_kill_moves_the_session_to_error_and_it_is_evicted(e2e):
    e2e.running.berth  # noqa: B018 - the tree is started by the fixture
    sid = e2e.create()
    client = e2e.subscribed_ready(sid)
    e2e.container(sid).kill()
    update = client.recv_until(
        lambda f: f["type"] == "session_update" and f["session"]["status"] == "error", timeout=30
    )[0]
    assert "exit" in update["session"]["statusReason"] or "disconnected" in update["session"]["statusReason"]


def test_docker_kill_then_eviction_removes_the_session_and_its_container(base_config, docker_runtime):
    config = replace(base_config, reconnect_grace=20, eviction_ttl=1, startup_timeout=90)
    with serving(config, docker_runtime) as e2e:
        sid = e2e.create()
        e2e.subscribed_ready(sid)
        e2e.container(sid).kill()
        listed = lambda: [info["id"] for info in e2e.call("GET", "/api/sessions")[1]["sessions"]]  # noqa: E731
        wait_until(lambda: sid not in listed(), timeout=60, what="eviction")
        wait_until(lambda: e2e.container(sid) is None, timeout=60, what="container removal")
        # Eviction removes the actor and the container, not the transcript (issue 9).
        assert e2e.status(sid) == "error"
        assert sid in [i["id"] for i in e2e.call("GET", "/api/sessions?ended=true")[1]["sessions"]]


def test_deleting_a_session_removes_its_container(e2e):
    sid = e2e.create()
    e2e.subscribed_ready(sid)
    assert e2e.container(sid) is not None
    assert e2e.call("DELETE", f"/api/sessions/{sid}")[0] == 204
    wait_until(lambda: e2e.container(sid) is None, timeout=60, what="container removal")
    assert e2e.status(sid) == "http 404"


def test_a_warm_pool_session_is_ready_from_a_pre_started_container(base_config, docker_runtime):
    config = replace(base_config, warm_pool_size=1, startup_timeout=90)
    with serving(config, docker_runtime) as e2e:
        berth = e2e.running.berth
        wait_until(lambda: berth.pool_status()["ready"] == 1, timeout=60, what="a pooled agent")
        started = time.monotonic()
        sid = e2e.create()
        client = e2e.subscribed_ready(sid)
        ready_after = time.monotonic() - started
        assert berth.pool_status()["claimed"] == 1
        client.send({"type": "send_prompt", "sessionId": sid, "content": "warm hello"})
        _, before = client.recv_until(lambda f: f["type"] == "result", timeout=30)
        assert "warm hello" in "".join(t for f in before if f["type"] == "stream" for t in f["tokens"])
        assert ready_after < 30
        wait_until(lambda: berth.pool_status()["ready"] == 1, timeout=60, what="the pool to refill")


def test_an_agent_that_cannot_start_ends_its_session_in_error_quoting_why(base_config, docker_runtime):
    config = replace(base_config, container_env=(("BERTH_RUNNER", "nonexistent"),))
    with serving(config, docker_runtime) as e2e:
        view = e2e.running.berth.wait_for_status(e2e.create(), {"error"}, timeout=60)
        assert view.info.status_reason == (
            "Session container exited unexpectedly (exit code 2). Its last words: ERROR agent: cannot "
            "start: BERTH_RUNNER must be 'builtin' or 'sdk', not 'nonexistent'"
        )


def test_asking_for_claude_code_in_an_image_without_the_sdk_ends_in_error_naming_the_fix(e2e):
    sid = e2e.create(runner="sdk")
    wait_until(lambda: e2e.status(sid) == "error", timeout=60, what="the error")
    text = "\n".join(m["content"] for m in e2e.history(sid))
    assert "no claude-agent-sdk" in text and "BERTH_IMAGE_EXTRAS=sdk" in text
