"""The built-in runner: deterministic turns, approvals, questions, interrupt, crash."""

from __future__ import annotations

import asyncio

import pytest

from agent.builtin_runner import MODELS, BuiltinConfig, BuiltinRunner
from agent.runner import RunnerClosed, RunnerFailed, TurnOutcome
from tests.agent.helpers import RunnerHarness, run_async
from transport.protocol import (
    ApprovalRequest,
    ModelsList,
    Question,
    Result,
    SdkMessage,
    SessionInfoUpdate,
    StatusUpdate,
    Stream,
)

pytestmark = pytest.mark.timeout(30)


def harness(**config) -> RunnerHarness:
    return RunnerHarness(BuiltinRunner(BuiltinConfig(**config)))


def kinds(h: RunnerHarness) -> list[str]:
    names = []
    for frame in h.host.snapshot():
        if isinstance(frame, StatusUpdate):
            names.append(f"status:{frame.status}")
        elif isinstance(frame, SdkMessage):
            names.append(f"message:{frame.message.kind}")
        elif not isinstance(frame, SessionInfoUpdate):
            names.append(type(frame).__name__)
    return names


def test_a_prompt_is_echoed_word_by_word_then_as_a_message_then_a_free_result():
    async def scenario():
        async with harness() as h:
            outcome = await h.turn(h.send("hello big world"))
            assert outcome == TurnOutcome("You said: hello big world")
            streams = h.host.of(Stream)
            assert [s.tokens for s in streams] == [["You "], ["said: "], ["hello "], ["big "], ["world"]]
            assert len({s.message_id for s in streams}) == 1
            [message] = h.host.of(SdkMessage)
            assert (message.message.id, message.message.content) == (streams[0].message_id, outcome.result)
            [result] = h.host.of(Result)
            assert result.cost_usd == 0 and not result.is_error
            assert result.context_usage is not None and result.context_usage.output_tokens == 5

    run_async(scenario())


def test_a_tool_command_waits_for_approval_and_reports_the_tool_result_when_allowed():
    async def scenario():
        async with harness() as h:
            item = h.send("/tool Bash ls -la")
            request = await h.frame(ApprovalRequest)
            assert (request.approval.tool_name, request.approval.tool_input) == (
                "Bash",
                {"command": "ls -la"},
            )
            await h.runner.approval_response(request.approval.id, True, None)
            assert (await h.turn(item)).result == "Tool Bash ran."
            assert kinds(h) == [
                "status:running",
                "message:tool_call",
                "ApprovalRequest",
                "status:awaiting_approval",
                "status:running",
                "message:tool_result",
                "Stream",
                "Stream",
                "Stream",
                "message:assistant",
                "Result",
            ]

    run_async(scenario())


def test_a_denied_tool_is_reported_as_an_error_tool_result():
    async def scenario():
        async with harness() as h:
            item = h.send("/tool Bash rm -rf /")
            request = await h.frame(ApprovalRequest)
            await h.runner.approval_response(request.approval.id, False, "no way")
            assert (await h.turn(item)).result == "Tool Bash was denied: no way"
            [tool_result] = [m.message for m in h.host.of(SdkMessage) if m.message.kind == "tool_result"]
            assert tool_result.is_error and tool_result.content == "denied: no way"

    run_async(scenario())


def test_an_approval_nobody_answers_is_denied_after_the_timeout():
    async def scenario():
        async with harness(approval_timeout=0.05) as h:
            outcome = await h.turn(h.send("/tool Bash ls"))
            assert outcome.result == "Tool Bash was denied: approval timed out"

    run_async(scenario())


def test_in_dangerous_mode_tools_run_without_asking():
    async def scenario():
        async with harness(permission_mode="dangerous") as h:
            assert (await h.turn(h.send("/tool Bash ls"))).result == "Tool Bash ran."
            assert h.host.of(ApprovalRequest) == []

    run_async(scenario())


def test_an_ask_command_relays_a_question_and_uses_the_answer():
    async def scenario():
        async with harness() as h:
            item = h.send("/ask Deploy now?")
            question = await h.frame(Question)
            assert question.question.questions[0].question == "Deploy now?"
            assert StatusUpdate(status="awaiting_answer") in h.host.snapshot()
            await h.runner.question_response(question.question.id, {"Deploy now?": "yes"})
            assert (await h.turn(item)).result == "You answered: Deploy now? = yes"

    run_async(scenario())


def test_stream_n_sends_one_stream_frame_per_token():
    async def scenario():
        async with harness() as h:
            outcome = await h.turn(h.send("/stream 500"))
            assert outcome.result == "streamed 500 tokens"
            assert len(h.host.of(Stream)) == 500

    run_async(scenario())


def test_quiet_answers_with_a_result_and_nothing_else():
    async def scenario():
        async with harness() as h:
            await h.turn(h.send("/quiet"))
            assert kinds(h) == ["Result"]

    run_async(scenario())


def test_interrupt_mid_stream_ends_the_turn_with_an_interrupted_error_result():
    async def scenario():
        async with harness(slow_delay=0.02) as h:
            item = h.send("/slow 1000")
            await h.frame(Stream)
            await h.runner.interrupt()
            assert await h.turn(item) == TurnOutcome("interrupted", is_error=True)
            [result] = h.host.of(Result)
            assert (result.result, result.is_error) == ("interrupted", True)
            assert len(h.host.of(Stream)) < 1000
            # The next turn runs normally.
            assert (await h.turn(h.send("again"))).result == "You said: again"

    run_async(scenario())


def test_user_messages_are_served_one_turn_at_a_time_in_order():
    async def scenario():
        async with harness(slow_delay=0.005) as h:
            items = [h.send("/slow 5"), h.send("second"), h.send("third")]
            outcomes = [await h.turn(item) for item in items]
            assert [o.result for o in outcomes] == [
                "streamed 5 tokens",
                "You said: second",
                "You said: third",
            ]
            order = [
                f.message_id if isinstance(f, Stream) else "result"
                for f in h.host.snapshot()
                if isinstance(f, Stream | Result)
            ]
            # Each turn's tokens are contiguous and end with its result.
            assert order.count("result") == 3
            segments = "|".join(order).split("result")
            assert all(len(set(filter(None, seg.split("|")))) == 1 for seg in segments[:-1])

    run_async(scenario())


def test_crash_kills_the_runner_loop_and_fails_the_turn_waiter():
    async def scenario():
        h = harness()
        async with h:
            item = h.send("/crash")
            with pytest.raises(RunnerFailed):
                await h.turn(item)
            assert h.task is not None
            await asyncio.wait({h.task}, timeout=5)
            with pytest.raises(RunnerFailed, match="died mid-turn"):
                h.task.result()

    run_async(scenario())


def test_close_with_an_approval_pending_denies_it_and_ends_the_run_promptly():
    async def scenario():
        h = harness()
        await h.__aenter__()
        item = h.send("/tool Bash ls")
        await h.frame(ApprovalRequest)
        assert await h.close() < 1.0
        with pytest.raises(RunnerClosed):
            await h.turn(item)

    run_async(scenario())


def test_model_and_permission_changes_are_reported_and_models_listed():
    async def scenario():
        async with harness() as h:
            await h.runner.set_model("builtin-echo-2")
            await h.runner.set_permission_mode("plan")
            await h.runner.get_models()
            assert SessionInfoUpdate(model="builtin-echo-2") in h.host.snapshot()
            assert SessionInfoUpdate(permission_mode="plan") in h.host.snapshot()
            assert h.host.of(ModelsList) == [ModelsList(models=MODELS)]

    run_async(scenario())


def test_close_fails_the_turns_still_queued_without_running_them():
    async def scenario():
        h = harness()
        await h.__aenter__()
        first = h.send("/tool Bash ls")
        queued = [h.send("/tool Bash pwd"), h.send("hello")]
        await h.frame(ApprovalRequest)
        assert await h.close() < 1.0
        for item in [first, *queued]:
            with pytest.raises(RunnerClosed):
                await h.turn(item)
        assert len(h.host.of(ApprovalRequest)) == 1

    run_async(scenario())
