"""A manager token over real HTTP: its manager and its children, and 403 for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from tests.rest_client import rest_call
from tests.served import start_stub_server
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.serve import RunningServer

API_TOKEN = "scopes-api-token-0123456789abcdef"


@pytest.fixture
def running(base_config) -> Iterator[tuple[RunningServer, StubRuntime]]:
    server = start_stub_server(base_config, API_TOKEN, "sk-ant-oat01-scopes-test-token")
    yield server, server.runtime  # type: ignore[attr-defined]
    server.stop()


def call(server: RunningServer, method: str, path: str, body: Any = None, token: str = API_TOKEN) -> Any:
    return rest_call(server.server.http_url, token, method, path, body)


def manager_token(server: RunningServer, runtime: StubRuntime, sid: str) -> str:
    container = wait_until(lambda: runtime.by_session(sid), what="the manager's container")
    return str(container.secrets_seen["manager-token"].strip())


def test_a_manager_token_drives_its_children_and_gets_403_for_any_other_session(running):
    server, runtime = running
    status, body = call(server, "POST", "/api/sessions", {"name": "boss", "manager": True})
    assert status == 201 and body["session"]["manager"]["children"] == []
    boss = body["session"]["id"]
    token = manager_token(server, runtime, boss)
    _, other = call(server, "POST", "/api/sessions", {"name": "someone else's"})
    foreign = other["session"]["id"]

    status, body = call(server, "POST", "/api/sessions", {"name": "kid"}, token=token)
    assert status == 201 and body["session"]["managedBy"] == boss
    kid = body["session"]["id"]
    assert call(server, "GET", f"/api/sessions/{kid}", token=token)[0] == 200
    assert call(server, "POST", f"/api/sessions/{kid}/message", {"content": "go"}, token=token)[0] == 202
    status, listed = call(server, "GET", "/api/sessions", token=token)
    assert status == 200 and [s["id"] for s in listed["sessions"]] == [kid]
    assert (
        call(server, "POST", f"/api/sessions/{boss}/manager/step", {"step": "planning"}, token=token)[0]
        == 202
    )
    wait_until(
        lambda: call(server, "GET", f"/api/sessions/{boss}")[1]["session"]["manager"]["step"] == "planning",
        what="the step",
    )

    for method, path in [
        ("GET", f"/api/sessions/{foreign}"),
        ("POST", f"/api/sessions/{foreign}/message"),
        ("DELETE", f"/api/sessions/{foreign}"),
        ("POST", f"/api/sessions/{foreign}/terminate"),
        ("GET", "/api/sessions/no-such-session"),
        ("DELETE", f"/api/sessions/{boss}"),
    ]:
        status, body = call(
            server, method, path, {"content": "x"} if "message" in path else None, token=token
        )
        assert status == 403, (method, path, body)
        assert f"scoped to manager session {boss}" in body["error"] or "own manager session" in body["error"]
    status, body = call(server, "POST", "/api/sessions", {"name": "x", "manager": True}, token=token)
    assert status == 400 and "cannot itself be a manager" in body["error"]
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WsPeer(f"{server.server.ws_url}/ws", [f"Authorization: Bearer {token}"])  # the server-wide stream
    assert refused.value.status_code == 403
    assert call(server, "GET", f"/api/sessions/{foreign}")[0] == 200  # the API token still can
    status, body = call(server, "GET", "/v1/sessions", token=token)  # the sessions API is server-wide
    assert status == 403 and "manager token" in body["error"]

    assert call(server, "DELETE", f"/api/sessions/{kid}", token=token)[0] == 204
    wait_until(
        lambda: call(server, "GET", "/api/sessions", token=token)[1]["sessions"] == [], what="kid gone"
    )


def test_a_manager_token_dies_with_its_manager(running):
    server, runtime = running
    _, body = call(server, "POST", "/api/sessions", {"name": "boss", "manager": True})
    boss = body["session"]["id"]
    token = manager_token(server, runtime, boss)
    assert call(server, "GET", "/api/sessions", token=token)[0] == 200
    assert call(server, "POST", f"/api/sessions/{boss}/terminate")[0] == 202
    wait_until(lambda: call(server, "GET", "/api/sessions", token=token)[0] == 401, what="the token to die")
    assert call(server, "POST", "/api/sessions", {"name": "kid"}, token=token)[0] == 401


def test_a_client_socket_creates_a_manager_session_and_is_acked_with_its_id(running):
    server, runtime = running
    client = WsPeer(f"{server.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"])
    client.send({"type": "create_session", "name": "boss", "manager": True, "requestId": "r1"})
    ack = client.recv_until(lambda f: f["type"] in ("ack", "protocol_error"), timeout=10)[0]
    assert ack["type"] == "ack" and ack["requestId"] == "r1"
    session = call(server, "GET", f"/api/sessions/{ack['sessionId']}")[1]["session"]
    assert session["manager"]["step"] == "idle"
    assert manager_token(server, runtime, ack["sessionId"])
    client.send({"type": "create_session", "name": "", "requestId": "r2"})
    refused = client.recv_until(lambda f: f["type"] in ("ack", "protocol_error"), timeout=10)[0]
    assert (
        refused["type"] == "protocol_error" and refused["requestId"] == "r2" and "name" in refused["message"]
    )
