"""The journal-to-API event mapping and the view over it, without a server (pure parts)."""

from __future__ import annotations

import time

from transport import protocol as p
from transport.protocol import SessionStatus as S
from transport.v1.mapping import EventMapper, Listed, Preview
from transport.v1.view import SessionsView, StreamEnded

SID = "s1"


def info(status: S, **extra: object) -> p.SessionInfo:
    return p.SessionInfo(id=SID, name="n", status=status, created_at=0.0, **extra)  # type: ignore[arg-type]


def message(seq: int, kind: str, content: str, mid: str = "", **extra: object) -> p.MessageAdded:
    chat = p.ChatMessage(id=mid or f"m{seq}", kind=kind, content=content, timestamp=time.time(), **extra)  # type: ignore[arg-type]
    return p.MessageAdded(session_id=SID, seq=seq, message=chat)


def tokens(seq: int, mid: str, text: str) -> p.StreamTokens:
    return p.StreamTokens(session_id=SID, seq=seq, message_id=mid, tokens=[text])


def listed(items: list[Listed | Preview]) -> list[dict[str, object]]:
    return [i.body for i in items if isinstance(i, Listed)]


def test_a_streamed_message_carries_the_id_its_preview_announced():
    mapper = EventMapper()
    start, delta = mapper.feed(tokens(5, "a", "Hel"))
    assert isinstance(start, Preview) and start.body["type"] == "event_start"
    announced = start.body["event"]["id"]
    assert delta.body == {
        "type": "event_delta",
        "event_id": announced,
        "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": "Hel"}},
    }
    mapper.feed(tokens(6, "a", "lo"))
    (done,) = listed(mapper.feed(message(7, "assistant", "Hello", "a")))
    assert done["id"] == announced and done["type"] == "agent.message"


def test_an_event_listed_inside_a_preview_drops_it_so_ids_never_go_back():
    mapper = EventMapper()
    announced = mapper.feed(tokens(5, "a", "x"))[0].body["event"]["id"]
    (system,) = listed(mapper.feed(message(6, "system", "agent reconnected")))
    (late,) = listed(mapper.feed(message(7, "assistant", "x", "a")))
    assert late["id"] != announced
    assert announced < str(system["id"]) < str(late["id"])
    assert mapper.open_preview() == []


def test_an_approval_blocks_on_the_tool_use_it_belongs_to():
    mapper = EventMapper()
    mapper.feed(p.SessionUpdate(session_id=SID, seq=1, session=info(S.IDLE)))
    (use,) = listed(mapper.feed(message(2, "tool_call", "Bash ls", tool_name="Bash", tool_input={"c": 1})))
    approval = p.PendingApproval(id="ap1", tool_name="Bash", tool_input={"c": 1}, timestamp=0.0)
    (blocked,) = listed(mapper.feed(p.ApprovalRequested(session_id=SID, seq=3, approval=approval)))
    assert blocked["stop_reason"] == {"type": "requires_action", "event_ids": [use["id"]]}
    assert mapper.blockers[str(use["id"])].berth_id == "ap1"
    (running,) = listed(mapper.feed(p.SessionUpdate(session_id=SID, seq=4, session=info(S.RUNNING))))
    assert running["type"] == "session.status_running"


def test_statuses_map_to_the_reference_transitions():
    mapper = EventMapper()
    kinds = []
    for seq, status in enumerate(
        [S.STARTING, S.IDLE, S.RUNNING, S.RECONNECTING, S.RUNNING, S.IDLE, S.ERROR], 1
    ):
        kinds += [
            b["type"]
            for b in listed(mapper.feed(p.SessionUpdate(session_id=SID, seq=seq, session=info(status))))
        ]
    assert kinds == [
        "session.status_running",
        "session.status_rescheduled",
        "session.status_running",
        "session.status_idle",
        "session.status_terminated",
    ]


def test_a_stream_joining_after_an_event_gets_exactly_the_later_ones_then_live_events():
    view = SessionsView(event_limit=100)
    for seq in range(1, 6):
        view.on_event(message(seq, "user", f"u{seq}"))
    keys, _ = view.events(SID)
    stream = view.subscribe(SID, after=keys[1], deltas=False)
    view.on_event(message(6, "user", "u6"))
    got = [stream.get(1)["content"][0]["text"] for _ in range(4)]
    assert got == ["u3", "u4", "u5", "u6"]
    assert stream.get(0.01) is None
    view.unsubscribe(stream)
    assert view.stream_count() == 0


def test_a_stream_that_falls_too_far_behind_is_ended_and_the_session_is_not_held_up():
    view = SessionsView(event_limit=3)
    stream = view.subscribe(SID, after=None, deltas=True)
    for seq in range(1, 10):
        view.on_event(tokens(seq, "a", "t"))
    for _ in range(3):
        stream.get(1)
    try:
        stream.get(1)
    except StreamEnded as exc:
        assert "Last-Event-ID" in str(exc)
    else:
        raise AssertionError("the stream should have ended")


def test_the_view_keeps_at_most_its_limit_of_events_per_session():
    view = SessionsView(event_limit=3)
    for seq in range(1, 8):
        view.on_event(message(seq, "user", f"u{seq}"))
    assert [e["content"][0]["text"] for e in view.events(SID)[1]] == ["u5", "u6", "u7"]


def test_the_view_forgets_sessions_that_ended_and_are_gone_when_a_new_one_appears():
    gone: set[str] = set()
    view = SessionsView(event_limit=10)

    class Bus:
        def subscribe(self, sink: object) -> None:
            pass

    view.start(Bus(), lambda sid: sid not in gone)  # type: ignore[arg-type]
    view.on_event(p.SessionUpdate(session_id="old", seq=1, session=info(S.TERMINATED)))
    view.on_event(p.SessionUpdate(session_id="live", seq=1, session=info(S.IDLE)))
    gone.update({"old", "live"})
    view.on_event(p.SessionUpdate(session_id="new", seq=1, session=info(S.STARTING)))
    assert sorted(view.known()) == ["live", "new"]


def test_an_approval_answered_over_the_websocket_no_longer_blocks_the_next_one():
    mapper = EventMapper()
    approval = p.PendingApproval(id="ap1", tool_name="Bash", tool_input={}, timestamp=0.0)
    mapper.feed(p.SessionUpdate(session_id=SID, seq=1, session=info(S.RUNNING)))
    mapper.feed(p.SessionUpdate(session_id=SID, seq=2, session=info(S.AWAITING_APPROVAL)))
    mapper.feed(p.ApprovalRequested(session_id=SID, seq=3, approval=approval))
    mapper.feed(p.SessionUpdate(session_id=SID, seq=4, session=info(S.RUNNING)))
    second = p.PendingApproval(id="ap2", tool_name="Bash", tool_input={}, timestamp=0.0)
    mapper.feed(p.SessionUpdate(session_id=SID, seq=5, session=info(S.AWAITING_APPROVAL)))
    *_, blocked = listed(mapper.feed(p.ApprovalRequested(session_id=SID, seq=6, approval=second)))
    assert [mapper.blockers[i].berth_id for i in blocked["stop_reason"]["event_ids"]] == ["ap2"]


def test_claude_code_retrying_an_api_request_is_a_retrying_session_error():
    mapper = EventMapper()
    retry = p.ApiRetrying(
        session_id=SID, seq=3, attempt=1, max_retries=10, retry_at=1.0, reason="overloaded", error_status=529
    )
    (body,) = listed(mapper.feed(retry))
    assert body["type"] == "session.error"
    assert body["error"] == {
        "type": "model_overloaded_error",
        "message": "Claude API request failed (overloaded); retry 1 of 10",
        "retry_status": {"type": "retrying"},
    }
    (limited,) = listed(mapper.feed(p.RateLimited(session_id=SID, seq=4, status="rejected")))
    assert limited["error"]["type"] == "model_rate_limited_error"
    assert listed(mapper.feed(p.RateLimited(session_id=SID, seq=5, status="allowed"))) == []
