"""The agent cuts a frame the server would refuse for its size, and says so in it."""

from __future__ import annotations

from agent.frame_size import CUT_INPUT, fit
from transport.protocol import (
    ApprovalRequest,
    ChatMessage,
    PendingApproval,
    Result,
    SdkMessage,
    Stream,
    encode_bytes,
)

LIMIT = 10_000


def test_a_frame_within_the_limit_is_sent_as_it_is():
    small = SdkMessage(message=ChatMessage(id="1", kind="assistant", content="hi", timestamp=1.0))
    assert fit(small, LIMIT) is small
    stream = Stream(message_id="m", tokens=["x" * 50_000])  # streams are batched small by the outbox
    assert fit(stream, LIMIT) is stream


def test_an_oversized_message_result_or_approval_is_cut_to_fit_and_says_so():
    message = ChatMessage(
        id="1", kind="tool_call", content="\x00" * 50_000, timestamp=1.0, tool_input={"a": "b" * 50_000}
    )
    fitted = fit(SdkMessage(message=message), LIMIT)
    assert isinstance(fitted, SdkMessage) and len(encode_bytes(fitted)) <= LIMIT
    assert "50000" not in fitted.message.content and "more characters did not fit" in fitted.message.content
    assert fitted.message.tool_input == CUT_INPUT and fitted.message.id == "1"
    result = fit(Result(result="r" * 50_000, cost_usd=0.5), LIMIT)
    assert isinstance(result, Result) and result.cost_usd == 0.5 and len(encode_bytes(result)) <= LIMIT
    approval = PendingApproval(id="a", tool_name="Write", tool_input={"content": "c" * 50_000}, timestamp=1.0)
    asked = fit(ApprovalRequest(approval=approval), LIMIT)
    assert isinstance(asked, ApprovalRequest) and asked.approval.tool_input == CUT_INPUT
    assert asked.approval.id == "a" and asked.approval.tool_name == "Write"
