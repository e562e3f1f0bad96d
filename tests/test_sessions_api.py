"""The /v1/ sessions-and-events API, driven by the real ``anthropic`` SDK against a real
``berth serve`` whose sessions run the real agent (built-in runner) in real containers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from actors.config import BerthConfig
from actors.secret import Secret
from tests.conftest import SESSION_IMAGE, docker_runtime_or_skip
from tests.waiting import wait_until
from transport.serve import RunningServer, start_server
from transport.settings import ServerSettings

API_TOKEN = "v1-api-token-0123456789abcdef"
BETA = {"anthropic-beta": "managed-agents-2026-04-01"}
MAX_STREAMS = 4


class Api:
    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.url = running.server.http_url
        self.client = anthropic.Anthropic(base_url=self.url, auth_token=API_TOKEN, max_retries=0, timeout=60)

    @property
    def view(self) -> Any:
        return self.running.server.sessions_api.state.view

    def create(self, **fields: Any) -> Any:
        return self.client.beta.sessions.create(
            **{"agent": "builtin", "environment_id": "default", "title": "v1 test", **fields}
        )

    def send_text(self, sid: str, text: str) -> Any:
        events: list[Any] = [{"type": "user.message", "content": [{"type": "text", "text": text}]}]
        return self.client.beta.sessions.events.send(sid, events=events).data[0]

    def stream(self, sid: str, last_event_id: str | None = None, deltas: bool = False) -> Any:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else None
        return self.client.beta.sessions.events.stream(
            sid, event_deltas=["agent.message"] if deltas else anthropic.omit, extra_headers=headers
        )

    def history(self, sid: str) -> list[Any]:
        return list(self.client.beta.sessions.events.list(sid, limit=1000))


def until(events: Iterator[Any], done: Callable[[Any], bool]) -> list[Any]:
    """Events from ``events`` up to and including the first for which ``done`` holds."""
    seen = []
    for event in events:
        seen.append(event)
        if done(event):
            return seen
    raise AssertionError(f"stream ended before the awaited event; saw {[e.type for e in seen]}")


def idle(reason: str) -> Callable[[Any], bool]:
    return lambda e: e.type == "session.status_idle" and e.stop_reason.type == reason


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    runtime = docker_runtime_or_skip()
    tmp = tmp_path_factory.mktemp("v1")
    config = BerthConfig(
        instance_id=f"t{uuid.uuid4().hex[:10]}",
        image=SESSION_IMAGE,
        state_dir=tmp / "state",
        claude_dir_root=tmp,
        eviction_ttl=60,
        startup_timeout=90,
        token_retry_delay=0.05,
        reconnect_grace=20,
        container_stop_timeout=0,
        container_memory=None,
        sessions_api_max_streams=MAX_STREAMS,
        sessions_api_keepalive=0.2,
        stop_sessions_on_exit=True,  # the leak check below expects a stop to remove everything
    )
    running = start_server(
        config,
        ServerSettings(port=0),
        api_token=Secret(API_TOKEN),
        runtime=runtime,
        environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-v1-token-0123456789"},
    )
    api = Api(running)
    try:
        yield api
        wait_until(lambda: api.view.stream_count() == 0, timeout=10, what="every event stream to be freed")
    finally:
        running.stop()
    left = runtime.client.api.containers(all=True, filters={"label": f"berth.instance={config.instance_id}"})
    assert not left, "containers left behind"


def test_a_streamed_turn_arrives_as_text_deltas_then_the_agent_message_then_idle(api):
    session = api.create(metadata={"team": "berth"})
    assert session.id.startswith("sesn_") and session.status == "idle"
    assert session.agent.id == "builtin" and session.metadata == {"team": "berth"}
    with api.stream(session.id, deltas=True) as events:
        sent = api.send_text(session.id, "/slow 5")
        assert sent.type == "user.message" and sent.id.startswith("sevt_")
        seen = until(iter(events), idle("end_turn"))
    types = [e.type for e in seen]
    assert "session.status_running" in types and types[-1] == "session.status_idle"
    start = next(e for e in seen if e.type == "event_start")
    deltas = [e for e in seen if e.type == "event_delta"]
    message = next(e for e in seen if e.type == "agent.message")
    assert start.event.type == "agent.message" and start.event.id == message.id
    assert all(d.event_id == message.id for d in deltas) and len(deltas) > 1
    text = "t0 t1 t2 t3 t4 "
    assert "".join(d.delta.content.text for d in deltas) == text == message.content[0].text
    listed = [e.id for e in seen if e.type not in ("event_start", "event_delta")]
    assert listed == sorted(listed) and len(set(listed)) == len(listed)
    history = api.history(session.id)
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert {"user.message", "agent.message", "session.status_idle"} <= {e.type for e in history}
    assert not any(e.type in ("event_start", "event_delta") for e in history)


def test_a_tool_call_needing_approval_is_allowed_and_then_one_is_denied_with_a_message(api):
    session = api.create()
    with api.stream(session.id) as events:
        stream = iter(events)
        api.send_text(session.id, "/tool Bash echo hi")
        seen = until(stream, idle("requires_action"))
        tool_use = next(e for e in seen if e.type == "agent.tool_use")
        assert tool_use.name == "Bash" and tool_use.input == {"command": "echo hi"}
        assert seen[-1].stop_reason.event_ids == [tool_use.id]
        assert api.client.beta.sessions.retrieve(session.id).status == "idle"
        confirm = {"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "allow"}
        echoed = api.client.beta.sessions.events.send(session.id, events=[confirm]).data[0]
        assert echoed.type == "user.tool_confirmation" and echoed.result == "allow"
        seen = until(stream, idle("end_turn"))
        result = next(e for e in seen if e.type == "agent.tool_result")
        assert result.tool_use_id == tool_use.id and not result.is_error
        assert next(e for e in seen if e.type == "agent.message").content[0].text == "Tool Bash ran."

        api.send_text(session.id, "/tool Bash rm -rf /")
        denied_use = until(stream, idle("requires_action"))[-1].stop_reason.event_ids[0]
        deny = {
            "type": "user.tool_confirmation",
            "tool_use_id": denied_use,
            "result": "deny",
            "deny_message": "not on my machine",
        }
        api.client.beta.sessions.events.send(session.id, events=[deny])
        seen = until(stream, idle("end_turn"))
    result = next(e for e in seen if e.type == "agent.tool_result")
    assert result.is_error and result.content[0].text == "denied: not on my machine"
    reply = next(e for e in seen if e.type == "agent.message").content[0].text
    assert reply == "Tool Bash was denied: not on my machine"
    confirmations = [e for e in api.history(session.id) if e.type == "user.tool_confirmation"]
    assert [(c.result, c.deny_message) for c in confirmations] == [
        ("allow", None),
        ("deny", "not on my machine"),
    ]


def test_an_interrupt_ends_a_streaming_turn_early(api):
    session = api.create()
    with api.stream(session.id, deltas=True) as events:
        stream = iter(events)
        api.send_text(session.id, "/slow 400")
        until(stream, lambda e: e.type == "event_delta")
        echoed = api.client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}]).data[0]
        assert echoed.type == "user.interrupt"
        seen = until(stream, lambda e: e.type == "berth.turn_result")
    assert any(idle("end_turn")(e) for e in seen)
    partial = next(e for e in seen if e.type == "agent.message").content[0].text
    assert partial.startswith("t0 ") and len(partial.split()) < 400
    result = next(e for e in seen if e.type == "berth.turn_result")
    assert result.is_error is True and result.result == "interrupted"
    assert "user.interrupt" in [e.type for e in api.history(session.id)]


def test_a_stream_dropped_mid_turn_resumes_after_its_last_event_id_with_nothing_missed_or_repeated(api):
    session = api.create()
    before = len(api.history(session.id))
    with api.stream(session.id) as events:
        stream = iter(events)
        api.send_text(session.id, "/slow 40")
        first = until(stream, lambda e: e.type == "session.status_running")
    wait_until(lambda: api.view.stream_count() == 0, timeout=10, what="the dropped stream to be freed")
    last = first[-1].id
    with api.stream(session.id, last_event_id=last) as events:
        resumed = until(iter(events), lambda e: e.type == "berth.turn_result")
    history = api.history(session.id)
    after_last = [e.id for e in history if e.id > last]
    assert [e.id for e in resumed] == after_last
    assert not {e.id for e in first} & {e.id for e in resumed}
    assert [e.id for e in first] == [e.id for e in history[before : before + len(first)]]
    assert "agent.message" in [e.type for e in resumed]


def test_paging_through_a_long_history_returns_every_event_once_in_order(api):
    session = api.create()
    with api.stream(session.id) as events:
        stream = iter(events)
        for n in range(40):
            api.send_text(session.id, f"/quiet {n}")
            until(stream, lambda e: e.type == "berth.turn_result")
    everything = api.history(session.id)
    assert sum(e.type == "user.message" for e in everything) == 40
    paged = list(api.client.beta.sessions.events.list(session.id, limit=7))
    assert [e.id for e in paged] == [e.id for e in everything]
    first_page = api.client.beta.sessions.events.list(session.id, limit=7)
    assert len(first_page.data) == 7 and first_page.next_page
    backwards = list(api.client.beta.sessions.events.list(session.id, limit=9, order="desc"))
    assert [e.id for e in backwards] == [e.id for e in reversed(everything)]
    only = list(api.client.beta.sessions.events.list(session.id, types=["user.message"], limit=5))
    assert len(only) == 40 and {e.type for e in only} == {"user.message"}


def test_a_question_is_answered_through_the_berth_extension_events(api):
    session = api.create()
    with api.stream(session.id) as events:
        stream = iter(events)
        api.send_text(session.id, "/ask Ship it?")
        seen = until(stream, idle("requires_action"))
        question = next(e for e in seen if e.type == "berth.question")
        assert seen[-1].stop_reason.event_ids == [question.id]
        assert question.questions[0]["question"] == "Ship it?"
        answer = {"type": "berth.question_answer", "question_id": question.id, "answers": {"Ship it?": "yes"}}
        api.client.beta.sessions.events.send(session.id, events=[answer])
        seen = until(stream, idle("end_turn"))
    assert (
        next(e for e in seen if e.type == "agent.message").content[0].text == "You answered: Ship it? = yes"
    )


def test_a_session_is_updated_listed_archived_and_deleted(api):
    session = api.create(
        resources=[
            {
                "type": "github_repository",
                "url": "https://github.com/example/none",
                "checkout": {"type": "branch", "name": "dev"},
            }
        ],
    )
    assert session.resources[0].url == "https://github.com/example/none"
    assert session.resources[0].checkout.name == "dev"
    (listed,) = api.client.beta.sessions.resources.list(session.id)
    fetched = api.client.beta.sessions.resources.retrieve(listed.id, session_id=session.id)
    assert listed.id == fetched.id == session.resources[0].id and fetched.url == listed.url
    sessions = api.client.beta.sessions
    updated = sessions.update(session.id, title="renamed", metadata={"a": "1", "b": "2"})
    assert updated.title == "renamed" and updated.metadata == {"a": "1", "b": "2"}
    assert sessions.update(session.id, metadata={"a": None}).metadata == {"b": "2"}
    assert session.id in [s.id for s in sessions.list(limit=100)]
    archived = sessions.archive(session.id)
    assert archived.archived_at is not None
    wait_until(lambda: sessions.retrieve(session.id).status == "terminated", timeout=30, what="terminated")
    assert session.id not in [s.id for s in sessions.list(limit=100)]
    assert session.id in [s.id for s in sessions.list(limit=100, include_archived=True)]
    with pytest.raises(anthropic.ConflictError):
        api.send_text(session.id, "too late")
    with api.stream(session.id) as events:
        stream = iter(events)
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
        reader.start()
        assert sessions.delete(session.id).type == "session_deleted"
        reader.join(timeout=10)
    assert not reader.is_alive() and got[-1].type == "session.deleted"
    with pytest.raises(anthropic.NotFoundError):
        sessions.retrieve(session.id)


def test_every_refusal_raises_the_sdk_error_class_the_reference_gives(api):
    sessions = api.client.beta.sessions
    with pytest.raises(anthropic.NotFoundError) as missing:
        sessions.retrieve("sesn_nosuchsession")
    assert missing.value.body["error"]["type"] == "not_found_error"
    wrong = anthropic.Anthropic(base_url=api.url, auth_token="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.beta.sessions.list()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=api.url, api_key="wrong", max_retries=0).beta.sessions.list()
    by_key = anthropic.Anthropic(base_url=api.url, api_key=API_TOKEN, max_retries=0)
    assert isinstance(by_key.beta.sessions.list().data, list)
    with pytest.raises(anthropic.NotFoundError):
        api.create(agent="no-such-agent")
    with pytest.raises(anthropic.NotFoundError):
        api.create(environment_id="no-such-environment")
    with pytest.raises(anthropic.BadRequestError) as bad:
        api.create(budget={"type": "list_cost", "max_list_cost": {"amount": "1", "currency": "USD"}})
    assert "budget" in bad.value.message
    session = api.create()
    with pytest.raises(anthropic.BadRequestError) as bad:
        sessions.events.send(
            session.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": "x"}]
        )
    assert "not supported" in bad.value.message
    confirm = {"type": "user.tool_confirmation", "tool_use_id": "sevt_000000000000000001", "result": "allow"}
    with pytest.raises(anthropic.BadRequestError):
        sessions.events.send(session.id, events=[confirm])
    raw = httpx2.get(f"{api.url}/v1/sessions", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert raw.status_code == 400 and "anthropic-beta" in raw.json()["error"]["message"]
    # A stream an earlier test closed holds its slot until the server's next keepalive write.
    slots = api.running.server.sessions_api.state.slots
    wait_until(lambda: slots.open == 0, timeout=10, what="earlier tests' streams to be freed")
    streams: list[Any] = []
    try:
        for _ in range(MAX_STREAMS):
            streams.append(api.stream(session.id))
        with pytest.raises(anthropic.RateLimitError) as limited:
            api.stream(session.id)
        assert "sessions_api_max_streams" in limited.value.message
    finally:
        for stream in streams:
            stream.close()
    sessions.delete(session.id)


def test_the_model_list_and_the_permission_mode_travel_as_berth_extension_events(api):
    session = api.create(extra_body={"berth_permission_mode": "plan"})
    assert session.berth_permission_mode == "plan"
    with api.stream(session.id) as events:
        stream = iter(events)
        send = api.client.beta.sessions.events.send
        send(session.id, events=[{"type": "berth.list_models"}])
        models = until(stream, lambda e: e.type == "berth.models")[-1]
        assert "builtin-echo" in [m["id"] for m in models.models]
        send(session.id, events=[{"type": "berth.set_permission_mode", "permission_mode": "auto_edits"}])
        changed = until(
            stream, lambda e: e.type == "berth.session_settings" and e.permission_mode == "auto_edits"
        )
    assert changed[-1].model == "builtin-echo"
    assert api.client.beta.sessions.retrieve(session.id).berth_permission_mode == "auto_edits"


def test_a_claude_code_session_in_an_image_without_the_sdk_reports_session_error_then_terminated(api):
    session = api.create(agent={"type": "agent_with_overrides", "id": "claude-code", "model": "claude-x"})
    assert session.agent.id == "claude-code" and session.agent.model.id == "claude-x"
    with api.stream(session.id, last_event_id="sevt_" + "0" * 18) as events:
        seen = until(iter(events), lambda e: e.type == "session.status_terminated")
    error = next(e for e in seen if e.type == "session.error")
    assert "BERTH_IMAGE_EXTRAS=sdk" in error.error.message
    assert "BERTH_IMAGE_EXTRAS=sdk" in seen[-1].berth_reason
    assert api.client.beta.sessions.retrieve(session.id).status == "terminated"
    assert any(e.type == "berth.system" for e in seen)


def test_initial_events_are_sent_when_the_session_is_created_and_a_stream_from_the_start_replays_them(api):
    first = {"type": "user.message", "content": [{"type": "text", "text": "sent at creation"}]}
    session = api.create(initial_events=[first])
    with api.stream(session.id, last_event_id="sevt_" + "0" * 18) as events:
        seen = until(iter(events), lambda e: e.type == "agent.message")
    assert [e.content[0].text for e in seen if e.type == "user.message"] == ["sent at creation"]
    assert seen[-1].content[0].text == "You said: sent at creation"
