"""The server over real sockets on 127.0.0.1, with a stub runtime and fake agents."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import websocket

from actors.messages import LookupSession
from tests.rest_client import rest_call
from tests.served import start_stub_server
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.serve import RunningServer

API_TOKEN = "test-api-token-0123456789abcdef"


@pytest.fixture
def running(base_config) -> Iterator[RunningServer]:
    server = start_stub_server(
        replace(base_config, client_outbox_bytes=1 << 20), API_TOKEN, "sk-ant-oat01-transport-test-token"
    )
    yield server
    server.stop()


def call(
    server: RunningServer, method: str, path: str, body: Any = None, token: str = API_TOKEN
) -> tuple[int, Any]:
    return rest_call(server.server.http_url, token, method, path, body)


def agent_for(server: RunningServer, sid: str, token: str | None = None) -> WsPeer:
    token = token or server.berth.lookup(sid).agent_token.reveal()
    return WsPeer(f"{server.server.ws_url}/agent/{sid}", [f"Authorization: Bearer {token}"])


def client_for(server: RunningServer) -> WsPeer:
    return WsPeer(f"{server.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"])


def create_ready(server: RunningServer) -> tuple[str, WsPeer]:
    status, body = call(server, "POST", "/api/sessions", {"name": "t"})
    assert status == 201, body
    sid = body["session"]["id"]
    wait_until(lambda: server.runtime.by_session(sid), what="container")  # type: ignore[attr-defined]
    agent = agent_for(server, sid)
    agent.send({"type": "ready"})
    wait_until(
        lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle", what="idle"
    )
    return sid, agent


def test_rest_requires_the_api_token_and_answers_errors_as_json(running):
    status, body = call(running, "GET", "/api/sessions", token="wrong")
    assert status == 401 and "API token" in body["error"]
    assert call(running, "GET", "/api/sessions") == (200, {"sessions": []})
    status, body = call(running, "GET", "/api/sessions/nope")
    assert status == 404 and "nope" in body["error"]
    status, body = call(running, "POST", "/api/sessions", {"name": "x", "permissionMode": "yolo"})
    assert status == 400 and "yolo" in body["error"]
    status, body = call(running, "POST", "/api/sessions", {"nmae": "typo"})
    assert status == 400 and "nmae" in body["error"]


def test_an_agent_with_a_wrong_token_is_refused_before_any_session_state_is_touched(running):
    _, body = call(running, "POST", "/api/sessions", {"name": "t"})
    sid = body["session"]["id"]
    wait_until(
        lambda: "started" in call(running, "GET", f"/api/sessions/{sid}")[1]["messages"][-1]["content"],
        what="the container start to be recorded",
    )
    before = call(running, "GET", f"/api/sessions/{sid}")[1]
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        agent_for(running, sid, token="not-the-token")
    assert err.value.status_code == 401
    after = call(running, "GET", f"/api/sessions/{sid}")[1]
    assert after == before


def test_a_full_turn_reaches_a_subscribed_client_with_sequence_numbers(running):
    sid, agent = create_ready(running)
    client = client_for(running)
    client.send({"type": "subscribe", "sessionId": sid, "requestId": "r1"})
    snapshot = client.recv()
    assert snapshot["type"] == "snapshot" and snapshot["session"]["status"] == "idle"
    assert client.recv()["type"] == "ack"
    client.send({"type": "send_prompt", "sessionId": sid, "content": "hello"})
    prompt = agent.recv_until(lambda f: f["type"] == "user_message")[0]
    assert prompt["content"] == "hello"
    agent.send({"type": "status_update", "status": "running"})
    agent.send({"type": "stream", "messageId": "m1", "tokens": ["hel", "lo"]})
    agent.send({"type": "result", "result": "hello", "costUsd": 0.01})
    result, before = client.recv_until(lambda f: f["type"] == "result")
    seqs = [f["seq"] for f in [*before, result] if "seq" in f]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(f["type"] == "stream" and f["tokens"] == ["hel", "lo"] for f in before)
    assert result["costUsd"] == 0.01
    assert not [f for f in before if f["type"] == "ack"]  # no requestId, no ack
    client.send({"type": "send_prompt", "sessionId": sid, "content": "again", "requestId": "p2"})
    ack = client.recv_until(lambda f: f["type"] == "ack")[0]
    assert ack["requestId"] == "p2" and ack["sessionId"] == sid


def test_frames_an_agent_sends_in_one_write_reach_the_client_in_order_with_a_streams_tokens_merged(running):
    sid, agent = create_ready(running)
    client = client_for(running)
    client.send({"type": "subscribe", "sessionId": sid, "requestId": "r"})
    client.recv_until(lambda f: f["type"] == "ack")
    frames = [{"type": "stream", "messageId": "a", "tokens": [f"a{i}"]} for i in range(40)]
    frames.append({"type": "setup_progress", "message": "between"})
    frames += [{"type": "stream", "messageId": "b", "tokens": [f"b{i}", "."]} for i in range(10)]
    wire = b"".join(
        websocket.ABNF.create_frame(json.dumps(f), websocket.ABNF.OPCODE_TEXT).format() for f in frames
    )
    agent.ws.sock.sendall(wire)  # one write: the server reads it at once
    last, seen = client.recv_until(lambda f: f["type"] == "stream" and "b9" in f["tokens"])
    streams = [f for f in [*seen, last] if f["type"] == "stream"]
    assert [t for f in streams if f["messageId"] == "a" for t in f["tokens"]] == [f"a{i}" for i in range(40)]
    assert [t for f in streams if f["messageId"] == "b" for t in f["tokens"]] == [
        t for i in range(10) for t in (f"b{i}", ".")
    ]
    assert len(streams) == 2  # one client frame per streamed message, not one per agent frame
    got = [*seen, last]
    order = [f["messageId"] if f["type"] == "stream" else f.get("message", {}).get("content") for f in got]
    assert order.index("a") < order.index("between") < order.index("b")  # it stays between them


def test_a_malformed_agent_frame_gets_an_error_and_the_connection_and_session_survive(running):
    sid, agent = create_ready(running)
    agent.send_raw("{not json")
    error = agent.recv_until(lambda f: f["type"] == "protocol_error")[0]
    assert "not valid JSON" in error["message"]
    agent.send({"type": "stream", "messageId": 5})
    error = agent.recv_until(lambda f: f["type"] == "protocol_error")[0]
    assert "messageId" in error["message"] or "tokens" in error["message"]
    agent.send({"type": "setup_progress", "message": "still here"})
    wait_until(
        lambda: (
            "still here"
            in [m["content"] for m in call(running, "GET", f"/api/sessions/{sid}")[1]["messages"]]
        ),
        what="the next frame to be applied",
    )


def test_a_malformed_client_frame_gets_an_error_naming_the_problem(running):
    client = client_for(running)
    client.send({"type": "teleport", "sessionId": "x"})
    error = client.recv()
    assert error["type"] == "protocol_error" and "teleport" in error["message"]
    client.send({"type": "send_prompt", "sessionId": "nope", "content": "hi", "requestId": "q"})
    error = client.recv()
    assert error["type"] == "protocol_error" and error["requestId"] == "q" and "nope" in error["message"]


def test_a_client_that_resubscribes_since_n_gets_exactly_what_it_missed(running):
    sid, agent = create_ready(running)
    client = client_for(running)
    client.send({"type": "subscribe", "sessionId": sid})
    last_seen = client.recv()["seq"]
    client.close()
    for i in range(3):  # three messages: their tokens are never merged into one event
        agent.send({"type": "stream", "messageId": f"m{i}", "tokens": [str(i)]})
    wait_until(lambda: running.berth.get_session(sid).seq >= last_seen + 3, what="events")
    again = client_for(running)
    again.send({"type": "subscribe", "sessionId": sid, "since": last_seen, "requestId": "again"})
    frames = [again.recv() for _ in range(3)]
    assert [f["tokens"] for f in frames] == [["0"], ["1"], ["2"]]
    assert [f["seq"] for f in frames] == [last_seen + 1, last_seen + 2, last_seen + 3]
    assert again.recv()["type"] == "ack"


def test_a_client_that_falls_too_far_behind_is_disconnected_with_a_reason(running):
    sid, agent = create_ready(running)
    slow = client_for(running)
    slow.send({"type": "subscribe", "sessionId": sid})
    big = ["x" * 1000] * 50
    for _ in range(400):  # the client reads nothing meanwhile
        agent.send({"type": "stream", "messageId": "m", "tokens": big})

    code, reason = slow.wait_closed(timeout=30)
    assert code == 4008 and "resubscribe" in reason
    assert running.berth.get_session(sid).info.status == "idle"


def test_a_second_agent_connection_replaces_the_first_with_close_code_4003(running):
    sid, first = create_ready(running)
    second = agent_for(running, sid)
    assert first.wait_closed() == (4003, "replaced by a newer connection")
    call(running, "POST", f"/api/sessions/{sid}/message", {"content": "to the second"})
    assert second.recv_until(lambda f: f["type"] == "user_message")[0]["content"] == "to the second"
    assert running.berth.get_session(sid).info.status == "idle"


def test_the_api_token_is_generated_once_into_a_private_file(tmp_path):
    from transport.auth import load_or_create_api_token

    first, created = load_or_create_api_token(tmp_path / "state")
    again, created_again = load_or_create_api_token(tmp_path / "state")
    token_file = tmp_path / "state" / "api-token"
    assert created and not created_again and first == again
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert first.reveal() not in repr(first)


def test_a_pooled_agent_given_a_session_the_supervisor_has_not_published_yet_is_let_in(base_config):
    """The claim reaches a pooled agent from inside the supervisor's create: its
    connect can beat the publish of that session, and must not be refused (404)."""
    server = start_stub_server(replace(base_config, warm_pool_size=1), API_TOKEN, "sk-ant-oat01-pool-race")
    berth = server.berth
    directory = berth._directory
    publish = directory.put
    released = threading.Event()

    def held_publish(entry: Any) -> None:  # the supervisor, descheduled between start and publish
        released.wait(10)
        publish(entry)

    try:
        wait_until(lambda: len(berth.pool_directory) == 1, what="a pool slot")
        slot = berth.pool_directory.ids()[0]
        entry = berth.pool_directory.get(slot)
        assert entry is not None
        auth = f"Authorization: Bearer {entry.agent_token.reveal()}"
        pooled = WsPeer(f"{server.server.ws_url}/agent/pool/{slot}", [auth])
        wait_until(lambda: berth.pool_status()["ready"] == 1, what="the pooled agent to be ready")
        directory.put = held_publish  # type: ignore[method-assign]
        creating = threading.Thread(target=call, args=(server, "POST", "/api/sessions", {"name": "warm"}))
        creating.start()
        assign, _ = pooled.recv_until(lambda f: f["type"] == "assign")
        sid = assign["sessionId"]
        assert directory.get(sid) is None  # not published yet
        agents: list[WsPeer | Exception] = []

        def connect() -> None:
            try:
                agents.append(agent_for(server, sid, token=assign["sessionToken"]))
            except Exception as exc:
                agents.append(exc)

        connecting = threading.Thread(target=connect)
        connecting.start()
        inbox = berth._supervisor.actor_inbox
        wait_until(
            lambda: agents or any(isinstance(e.message, LookupSession) for e in list(inbox.queue)),  # type: ignore[attr-defined]
            what="the agent's connect to wait for the supervisor",
        )
        released.set()
        connecting.join(10)
        creating.join(10)
        agent = agents[0]
        assert isinstance(agent, WsPeer), f"the agent was refused: {agent}"
        agent.send({"type": "ready"})
        wait_until(
            lambda: call(server, "GET", f"/api/sessions/{sid}")[1]["session"]["status"] == "idle", what="idle"
        )
    finally:
        released.set()
        server.stop()
