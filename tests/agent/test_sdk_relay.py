"""The SDK-message-to-frame mapping, fed with the SDK's own message types."""

from __future__ import annotations

from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    UserMessage,
)

from agent.sdk_permissions import question_items
from agent.sdk_relay import MAX_TOOL_RESULT_CHARS, Relay
from transport.protocol import AgentToServer, RateLimit, Result, SdkMessage, SessionInfoUpdate, Stream


def relay() -> tuple[Relay, list[AgentToServer]]:
    frames: list[AgentToServer] = []
    return Relay(frames.append, None, "normal"), frames


def event(payload: dict[str, Any]) -> StreamEvent:
    return StreamEvent(uuid="u", session_id="s", event=payload)


def test_text_blocks_of_one_api_message_get_distinct_ids_the_first_being_the_stream_id():
    r, frames = relay()
    r.handle(event({"type": "message_start", "message": {"id": "msg_1"}}))
    r.handle(event({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a"}}))
    r.handle(AssistantMessage(content=[TextBlock("a")], model="m", message_id="msg_1"))
    r.handle(AssistantMessage(content=[TextBlock("b")], model="m", message_id="msg_1"))
    assert frames[0] == Stream(message_id="msg_1", tokens=["a"])
    assert [f.message.id for f in frames[1:] if isinstance(f, SdkMessage)] == ["msg_1", "msg_1-1"]


def test_a_huge_tool_result_is_cut_to_a_size_the_server_accepts():
    r, frames = relay()
    r.handle(
        UserMessage(content=[ToolResultBlock(tool_use_id="t1", content="x" * (MAX_TOOL_RESULT_CHARS * 3))])
    )
    [frame] = frames
    assert isinstance(frame, SdkMessage)
    assert len(frame.message.content) < MAX_TOOL_RESULT_CHARS + 100
    assert frame.message.content.endswith(f"[{MAX_TOOL_RESULT_CHARS * 2} more characters not shown]")


def test_session_info_is_reported_only_on_a_change_and_always_with_both_model_and_mode():
    r, frames = relay()
    init = {"model": "m1", "permissionMode": "default"}
    r.handle(SystemMessage(subtype="init", data=init))
    r.handle(SystemMessage(subtype="init", data=init))
    r.handle(SystemMessage(subtype="status", data={"permissionMode": "plan"}))
    assert frames == [
        SessionInfoUpdate(model="m1", permission_mode="normal"),
        SessionInfoUpdate(model="m1", permission_mode="plan"),
    ]


def test_a_rate_limit_event_is_relayed_with_its_status_and_reset_time():
    from claude_agent_sdk import RateLimitEvent, RateLimitInfo

    r, frames = relay()
    info = RateLimitInfo(status="rejected", resets_at=1_900_000_000, rate_limit_type="five_hour")
    r.handle(RateLimitEvent(rate_limit_info=info, uuid="u", session_id="s"))
    assert frames == [RateLimit(status="rejected", resets_at=1_900_000_000.0, limit_type="five_hour")]


def test_an_aborted_turn_reports_interrupted_and_other_errors_their_text():
    r, frames = relay()

    def error_result(subtype: str, **extra: Any) -> ResultMessage:
        return ResultMessage(
            subtype, duration_ms=1, duration_api_ms=1, is_error=True, num_turns=1, session_id="s", **extra
        )

    r.handle(error_result("error_during_execution", terminal_reason="aborted_streaming"))
    r.handle(error_result("error_max_turns", errors=["too many turns"]))
    assert [(f.result, f.is_error) for f in frames if isinstance(f, Result)] == [
        ("interrupted", True),
        ("too many turns", True),
    ]


def test_question_items_tolerate_missing_and_malformed_fields():
    items = question_items({"questions": [{"question": "Q?", "options": [{"label": "a"}, "junk"]}, "junk"]})
    assert [(i.question, i.header, [o.label for o in i.options], i.multi_select) for i in items] == [
        ("Q?", "", ["a"], False)
    ]
