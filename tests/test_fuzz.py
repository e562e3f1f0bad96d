"""Random and mutated input against a real server on 127.0.0.1 (hypothesis).

Valid frames and bodies with one field broken (dropped, the wrong type, a
huge value), truncated JSON, invalid UTF-8 and random bytes go to the REST
API, the client socket and the agent socket. Whatever arrives, the server
answers with a clear error (never a 500, never silence for a command that
asked for an answer), its memory stays bounded, and the session under fire
keeps its history and still runs a turn afterwards.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import websocket
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actors.secret import Secret
from tests.rest_client import rest_call
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from tests.ws_client import WsPeer
from transport.agent_guard import check_agent_frame
from transport.limits import Limits
from transport.protocol import AgentError, FrameError, decode_agent_frame
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings

API_TOKEN = "fuzz-api-token-0123456789abcdef0123456789"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ------------------------------------------------------------------ strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e300, -1e300, -1, 0, 2**63]),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
huge_values = st.one_of(
    st.integers(min_value=1_000, max_value=300_000).map(lambda n: "x" * n),
    st.just(["t"] * 5_000),
    st.just({f"k{i}": "v" for i in range(2_000)}),
)


def mutated(frames: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A valid frame with one field dropped, retyped or made huge; or the frame
    as JSON, truncated, with invalid UTF-8, or replaced by random bytes."""

    @st.composite
    def one(draw: st.DrawFn) -> bytes:
        frame = dict(draw(frames))
        how = draw(st.sampled_from(["valid", "drop", "retype", "huge", "truncate", "utf8", "bytes", "extra"]))
        keys = [k for k in frame if k != "type"] or ["type"]
        key = draw(st.sampled_from(keys))
        if how == "drop":
            frame.pop(key, None)
        elif how == "retype":
            frame[key] = draw(json_values)
        elif how == "huge":
            frame[key] = draw(huge_values)
        elif how == "extra":
            frame[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
        data = json.dumps(frame).encode()
        if how == "truncate":
            data = data[: draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))]
        elif how == "utf8":
            at = draw(st.integers(min_value=0, max_value=len(data)))
            bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
            data = data[:at] + bad + data[at:]
        elif how == "bytes":
            data = draw(st.binary(max_size=200))
        return data

    return one()


def agent_frames(now: float) -> st.SearchStrategy[dict[str, Any]]:
    message = {"id": "m", "kind": "assistant", "content": "hi", "timestamp": now}
    usage = {"inputTokens": 1, "outputTokens": 2, "numTurns": 1, "durationMs": 3}
    return st.sampled_from(
        [
            {"type": "setup_progress", "message": "cloning"},
            {"type": "sdk_message", "message": message},
            {"type": "sdk_message", "message": {**message, "kind": "tool_call", "toolInput": {"a": 1}}},
            {"type": "stream", "messageId": "s1", "tokens": ["a", "b"]},
            {"type": "result", "result": "done", "costUsd": 0.01, "isError": False, "contextUsage": usage},
            {"type": "status_update", "status": "running"},
            {"type": "session_info_update", "model": "m1", "totalCostUsd": 0.5, "contextUsage": usage},
            {"type": "models_list", "models": [{"value": "m", "displayName": "M", "description": ""}]},
            {"type": "error", "message": "oops", "fatal": False},
        ]
    )


def client_frames(sid: str) -> st.SearchStrategy[dict[str, Any]]:
    base = {"sessionId": sid, "requestId": "fuzz"}
    return st.sampled_from(
        [
            {"type": "subscribe", **base, "since": 1},
            {"type": "unsubscribe", **base},
            {"type": "send_prompt", **base, "content": "hello"},
            {"type": "approve_tool", **base, "approvalId": "a1", "allow": True, "message": "ok"},
            {"type": "answer_question", **base, "questionId": "q1", "answers": {"Which?": "red"}},
            {"type": "update_settings", **base, "name": "renamed", "permissionMode": "plan"},
            {"type": "set_model", **base, "model": "m2"},
            {"type": "get_models", **base},
        ]
    )


REST_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/sessions", {"name": "n", "repoUrl": "https://e.com/r.git", "branch": "b", "model": "m"}),
    ("POST", "/message", {"content": "hello"}),
    ("POST", "/approve", {"approvalId": "a1", "allow": False, "message": "no"}),
    ("POST", "/answer", {"questionId": "q1", "answers": {"Which?": "red"}}),
    ("PATCH", "/settings", {"name": "n2", "permissionMode": "plan"}),
    ("POST", "/model", {"model": "m"}),
    ("POST", "/interrupt", {}),
    ("POST", "/models", {}),
    # the /v1/ sessions API: {sid} is the live session
    ("POST", "/v1/sessions", {"agent": "builtin", "environment_id": "default", "title": "t"}),
    ("POST", "/v1/sessions/{sid}", {"title": "renamed", "metadata": {"k": "v"}}),
    (
        "POST",
        "/v1/sessions/{sid}/events",
        {"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]},
    ),
    ("POST", "/v1/sessions/{sid}/events", {"events": [{"type": "berth.set_model", "model": "m"}]}),
]

# ------------------------------------------------------------------ the server


@pytest.fixture
def running(base_config) -> Iterator[RunningServer]:
    runtime = StubRuntime()
    config = replace(base_config, max_sessions=20, reconnect_grace=30)
    server = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API_TOKEN),
        runtime=runtime,
        environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-fuzz-token"},
    )
    server.runtime = runtime  # type: ignore[attr-defined]
    server.limits = Limits.from_config(config)  # type: ignore[attr-defined]
    yield server
    server.stop()


class Live:
    """One ready session, its agent and a subscribed client."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        status, body = rest_call(server.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "fuzz"})
        assert status == 201, body
        self.sid: str = body["session"]["id"]
        wait_until(lambda: server.runtime.by_session(self.sid), what="container")  # type: ignore[attr-defined]
        self.agent = self.connect_agent()
        self.agent.send({"type": "ready"})
        wait_until(lambda: self.view()["session"]["status"] == "idle", what="idle")

    def connect_agent(self) -> WsPeer:
        token = self.server.berth.lookup(self.sid).agent_token.reveal()
        return WsPeer(f"{self.server.server.ws_url}/agent/{self.sid}", [f"Authorization: Bearer {token}"])

    def client(self) -> WsPeer:
        return WsPeer(f"{self.server.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"])

    def view(self) -> dict[str, Any]:
        status, body = rest_call(self.server.server.http_url, API_TOKEN, "GET", f"/api/sessions/{self.sid}")
        assert status == 200, body
        return dict(body)

    def still_works(self, history_before: list[dict[str, Any]]) -> None:
        """The history so far is intact and a whole turn still runs."""
        after = self.view()
        assert after["session"]["status"] not in ("error", "terminated"), after["session"]
        ids_after = [m["id"] for m in after["messages"]]
        for message in history_before:
            assert message in after["messages"], f"lost {message['id']} ({ids_after[:5]}…)"
        self.agent.send({"type": "result", "result": "", "costUsd": 0})
        wait_until(lambda: self.view()["session"]["status"] == "idle", what="idle after the fuzzing")
        client = self.client()
        client.send(
            {"type": "send_prompt", "sessionId": self.sid, "content": "after the fuzz", "requestId": "z"}
        )
        assert client.recv_until(lambda f: f["type"] == "ack" and f["requestId"] == "z")[0]
        prompt = self.agent.recv_until(lambda f: f.get("content") == "after the fuzz", timeout=10)[0]
        assert prompt["type"] == "user_message"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def send_text_bytes(peer: WsPeer, data: bytes) -> None:
    """A text frame with exactly these bytes (invalid UTF-8 included)."""
    peer.ws.send(data, opcode=websocket.ABNF.OPCODE_TEXT)


def _frames_until(
    peer: WsPeer, is_answer: Callable[[dict[str, Any]], bool], what: str
) -> tuple[list[dict[str, Any]], int | None]:
    """Text frames up to the first one ``is_answer`` accepts (then ``None``), or the close code."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        peer.ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            opcode, data = peer.ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return seen, 1006
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return seen, int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        if opcode != websocket.ABNF.OPCODE_TEXT:
            continue
        frame = json.loads(data)
        if is_answer(frame):
            return seen, None
        seen.append(frame)
    raise AssertionError(f"no {what} within 10 s; saw {[f.get('type') for f in seen]}")


def answer_or_close(peer: WsPeer, probe: str) -> tuple[list[dict[str, Any]], int | None]:
    """Frames up to the answer to ``probe`` (a frame whose error names it: 0), or the close code."""

    def names_probe(frame: dict[str, Any]) -> bool:
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        if frame["type"] != "protocol_error":
            return False
        assert frame["message"], frame
        return probe in frame["message"] or frame.get("requestId") == probe

    seen, closed = _frames_until(peer, names_probe, f"answer to {probe}")
    return seen, 0 if closed is None else closed


# ------------------------------------------------------------------ the fuzz tests


def test_fuzzed_agent_frames_get_clear_errors_and_the_session_survives_intact(running):
    live = Live(running)
    before = live.view()["messages"]
    start_rss = rss_mb()
    limits: Limits = running.limits
    counter = iter(range(1_000_000))

    @FUZZ
    @given(data=mutated(agent_frames(time.time())))
    def fuzz(data: bytes) -> None:
        try:
            frame = decode_agent_frame(data)
            check_agent_frame(frame, limits)
            assume(not (isinstance(frame, AgentError) and frame.fatal))  # a valid fatal error ends a session
        except (FrameError, UnicodeDecodeError):
            pass
        probe = f"probe{next(counter)}"
        send_text_bytes(live.agent, data)
        live.agent.send({"type": probe})  # an unknown type: answered with an error naming it
        seen, closed = answer_or_close(live.agent, probe)
        outcomes["errors"] += sum(1 for f in seen if f["type"] == "protocol_error")
        if closed:  # only invalid UTF-8 in a text frame ends the connection (1007), as it must
            assert closed == 1007, (closed, data[:100])
            outcomes["closed 1007"] += 1
            live.agent = live.connect_agent()
        outcomes["examples"] += 1

    outcomes: Counter[str] = Counter()
    fuzz()
    assert outcomes["examples"] >= 100 and outcomes["errors"] >= 20 and outcomes["closed 1007"] >= 5, outcomes
    assert rss_mb() - start_rss < 60, "memory grew while fuzzing"
    live.still_works(before)


def test_fuzzed_client_frames_get_clear_errors_and_the_session_survives_intact(running):
    live = Live(running)
    before = live.view()["messages"]
    start_rss = rss_mb()
    holder = {"client": live.client()}
    counter = iter(range(1_000_000))

    @FUZZ
    @given(data=mutated(client_frames(live.sid)))
    def fuzz(data: bytes) -> None:
        probe = f"probe{next(counter)}"
        client = holder["client"]
        send_text_bytes(client, data)
        client.send({"type": "unsubscribe", "sessionId": "nobody", "requestId": probe})
        seen, closed = _until_ack(client, probe)
        outcomes["examples"] += 1
        if closed is not None:
            assert closed in (1007, 1009), closed  # invalid UTF-8; a frame over the size limit
            outcomes[f"closed {closed}"] += 1
            holder["client"] = live.client()
            return
        for frame in seen:
            if frame["type"] == "protocol_error":
                assert frame["message"]
                outcomes["errors"] += 1

    outcomes: Counter[str] = Counter()
    fuzz()
    assert outcomes["examples"] >= 100 and outcomes["errors"] >= 20 and outcomes["closed 1007"] >= 5, outcomes
    assert rss_mb() - start_rss < 60, "memory grew while fuzzing"
    live.still_works(before)


def _until_ack(client: WsPeer, probe: str) -> tuple[list[dict[str, Any]], int | None]:
    def acked(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "ack" and frame.get("requestId") == probe

    return _frames_until(client, acked, f"ack for {probe}")


def test_fuzzed_rest_bodies_get_json_errors_never_a_server_error(running):
    live = Live(running)
    before = live.view()["messages"]
    start_rss = rss_mb()
    host, port = "127.0.0.1", running.server.port

    @FUZZ
    @given(target=st.sampled_from(REST_BODIES), data=st.data())
    def fuzz(target: tuple[str, str, dict[str, Any]], data: st.DataObject) -> None:
        method, path, body = target
        raw = data.draw(mutated(st.just(body)))
        if path.startswith("/v1"):
            url = path.replace("{sid}", f"sesn_{live.sid}")
        else:
            url = path if path.startswith("/api") else f"/api/sessions/{live.sid}{path}"
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {API_TOKEN}", "anthropic-beta": "managed-agents-2026-04-01"}
            connection.request(method, url, body=raw, headers=headers)
            response = connection.getresponse()
            status, payload = response.status, response.read()
        finally:
            connection.close()
        assert status < 500, (status, payload[:300])
        outcomes[str(status)] += 1
        if status >= 400:
            error = json.loads(payload)["error"]
            if isinstance(error, dict):  # the /v1/ API's shape
                error = error["message"]
            assert isinstance(error, str) and 0 < len(error) <= 1100, error  # never a megabyte echoed

    outcomes: Counter[str] = Counter()
    fuzz()
    assert sum(outcomes.values()) >= 100 and outcomes["400"] >= 20, outcomes
    assert rss_mb() - start_rss < 60, "memory grew while fuzzing"
    live.still_works(before)
