"""The SDK runner through the real claude-agent-sdk talking to tests/fake_claude.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from actors.secret import Secret
from agent.credentials import read_access_token
from agent.runner import RunnerClosed, RunnerFailed, TurnOutcome
from agent.sdk_runner import SdkRunner, SdkRunnerConfig
from tests.agent.helpers import RunnerHarness, run_async, wait_until
from transport.protocol import (
    AgentError,
    ApiRetry,
    ApprovalRequest,
    ModelInfo,
    ModelsList,
    Question,
    Result,
    SdkMessage,
    SessionInfoUpdate,
    StatusUpdate,
    Stream,
)

pytestmark = pytest.mark.timeout(60)

TOKEN = "sk-ant-oat01-fake-runner-token"
FAKE_CLI = Path(__file__).resolve().parents[1] / "fake_claude.py"
CLOSE_TIMEOUT = 1.0
# A close may wait close_timeout for the CLI and close_timeout again after a kill.
CLOSE_BOUND = 2 * CLOSE_TIMEOUT + 1.0

TOOL = [{"tool": "Bash", "input": {"command": "ls"}}, {"say": "after the tool"}]
QUESTION = {
    "question": "Which colour?",
    "header": "Colour",
    "options": [{"label": "red", "description": "warm"}, {"label": "blue", "description": "cold"}],
    "multiSelect": False,
}


class FakeCli:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.script = tmp_path / "script.json"
        self.log = tmp_path / "fake.log"

    def harness(
        self,
        turns: dict[str, Any] | None = None,
        token: str | None = TOKEN,
        approval_timeout: float = 5.0,
        token_wait: float = 0.0,
        park_after: float = 0.0,
        allow_dangerous: bool = False,
        tool_env_file: str | None = None,
        **script: Any,
    ) -> RunnerHarness:
        self.script.write_text(json.dumps({"turns": turns or {}, **script}))
        config = SdkRunnerConfig(
            cli_path=str(FAKE_CLI),
            cwd=str(self.dir),
            approval_timeout=approval_timeout,
            close_timeout=CLOSE_TIMEOUT,
            env={"FAKE_CLAUDE_SCRIPT": str(self.script), "FAKE_CLAUDE_LOG": str(self.log)},
            claude_config_dir=str(self.dir / "claude"),
            token_wait=token_wait,
            park_after=park_after,
            allow_dangerous=allow_dangerous,
            tool_env_file=tool_env_file,
        )
        return RunnerHarness(SdkRunner(config, Secret(token) if token else None), close_bound=CLOSE_BOUND + 1)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == name]

    def credentials(self) -> str | None:
        return read_access_token(self.dir / "claude" / ".credentials.json")


@pytest.fixture
def cli(tmp_path: Path) -> FakeCli:
    return FakeCli(tmp_path)


def test_a_turn_relays_status_tokens_the_assistant_message_and_the_result(cli):
    async def scenario():
        async with cli.harness({"hi": [{"tokens": ["Hel", "lo", "!"]}]}) as h:
            outcome = await h.turn(h.send("hi"))
            assert outcome == TurnOutcome("Hello!")
            frames = h.host.snapshot()
            assert frames[0] == StatusUpdate(status="running")
            assert [s.tokens for s in h.host.of(Stream)] == [["Hel"], ["lo"], ["!"]]
            [message] = h.host.of(SdkMessage)
            assert (message.message.kind, message.message.content) == ("assistant", "Hello!")
            [result] = h.host.of(Result)
            assert (result.result, result.cost_usd, result.is_error) == ("Hello!", 0.001, False)
            usage = result.context_usage
            assert usage is not None
            assert (usage.input_tokens, usage.output_tokens, usage.context_window) == (10, 5, 200000)
            assert (usage.cache_read_tokens, usage.cache_creation_tokens) == (2, 1)
            assert frames.index(result) == len(frames) - 1

    run_async(scenario())


def test_every_token_of_a_streamed_message_carries_that_messages_api_id(cli):
    async def scenario():
        async with cli.harness({"two": [{"say": "first message"}, {"say": "second one here"}]}) as h:
            await h.turn(h.send("two"))
            streams = h.host.of(Stream)
            ids = list(dict.fromkeys(s.message_id for s in streams))
            assert len(ids) == 2 and all(i.startswith("msg_") for i in ids)
            assert ["".join(t for s in streams if s.message_id == i for t in s.tokens) for i in ids] == [
                "first message",
                "second one here",
            ]
            assert [m.message.id for m in h.host.of(SdkMessage)] == ids

    run_async(scenario())


def test_system_init_reports_the_model_and_permission_mode(cli):
    async def scenario():
        async with cli.harness() as h:
            await h.turn(h.send("hello"))
            assert SessionInfoUpdate(model="fake-model-1", permission_mode="normal") in h.host.snapshot()

    run_async(scenario())


def test_an_allowed_tool_runs_and_its_call_and_result_are_relayed(cli):
    async def scenario():
        async with cli.harness({"tool": TOOL}) as h:
            item = h.send("tool")
            request = await h.frame(ApprovalRequest)
            assert (request.approval.tool_name, request.approval.tool_input) == ("Bash", {"command": "ls"})
            assert h.host.snapshot()[-1] == StatusUpdate(status="awaiting_approval")
            await h.runner.approval_response(request.approval.id, True, None)
            assert (await h.turn(item)).result == "after the tool"
            messages = [m.message for m in h.host.of(SdkMessage)]
            assert [(m.kind, m.tool_name) for m in messages[:2]] == [
                ("tool_call", "Bash"),
                ("tool_result", None),
            ]
            assert messages[1].tool_use_id == messages[0].tool_use_id and not messages[1].is_error
            assert cli.events("permission")[0]["answer"]["response"]["behavior"] == "allow"

    run_async(scenario())


def test_a_denied_tool_returns_the_denial_to_claude(cli):
    async def scenario():
        async with cli.harness({"tool": TOOL}) as h:
            item = h.send("tool")
            request = await h.frame(ApprovalRequest)
            await h.runner.approval_response(request.approval.id, False, "not today")
            await h.turn(item)
            [tool_result] = [m.message for m in h.host.of(SdkMessage) if m.message.kind == "tool_result"]
            assert (tool_result.is_error, tool_result.content) == (True, "not today")
            answer = cli.events("permission")[0]["answer"]["response"]
            assert (answer["behavior"], answer["message"]) == ("deny", "not today")

    run_async(scenario())


def test_an_approval_nobody_answers_is_denied_when_it_times_out(cli):
    async def scenario():
        async with cli.harness({"tool": TOOL}, approval_timeout=0.2) as h:
            await h.turn(h.send("tool"))
            answer = cli.events("permission")[0]["answer"]["response"]
            assert (answer["behavior"], answer["message"]) == ("deny", "the approval timed out")
            assert StatusUpdate(status="running") in h.host.snapshot()[2:]

    run_async(scenario())


def test_ask_user_question_is_relayed_and_the_answer_returned_as_the_tools_input(cli):
    async def scenario():
        async with cli.harness({"ask": [{"ask": [QUESTION]}, {"say": "thanks"}]}) as h:
            item = h.send("ask")
            question = await h.frame(Question)
            [asked] = question.question.questions
            assert (asked.question, asked.header, [o.label for o in asked.options]) == (
                "Which colour?",
                "Colour",
                ["red", "blue"],
            )
            assert h.host.snapshot()[-1] == StatusUpdate(status="awaiting_answer")
            await h.runner.question_response(question.question.id, {"Which colour?": "blue"})
            assert (await h.turn(item)).result == "thanks"
            updated = cli.events("permission")[0]["answer"]["response"]["updatedInput"]
            assert updated == {"questions": [QUESTION], "answers": {"Which colour?": "blue"}}

    run_async(scenario())


def test_interrupt_mid_stream_ends_the_turn_with_an_error_result(cli):
    async def scenario():
        async with cli.harness({"hang": [{"hang": ["partial "]}]}) as h:
            item = h.send("hang")
            await h.frame(Stream)
            await h.runner.interrupt()
            assert await h.turn(item) == TurnOutcome("interrupted", is_error=True)
            assert h.host.of(Result)[-1].is_error
            assert (await h.turn(h.send("next"))).result == "You said: next"

    run_async(scenario())


def test_interrupt_with_an_approval_pending_denies_it_and_ends_the_turn(cli):
    async def scenario():
        async with cli.harness({"tool": TOOL}) as h:
            item = h.send("tool")
            await h.frame(ApprovalRequest)
            await h.runner.interrupt()
            outcome = await h.turn(item)
            assert outcome.is_error
            assert cli.events("aborted")[0]["reason"] == "aborted_tools"
            assert h.runner._permissions.pending == 0

    run_async(scenario())


def test_set_model_switches_the_model_for_the_next_turn(cli):
    async def scenario():
        async with cli.harness() as h:
            await h.turn(h.send("one"))
            await h.runner.set_model("fake-model-2")
            assert h.host.snapshot()[-1] == SessionInfoUpdate(model="fake-model-2", permission_mode="normal")
            await h.turn(h.send("two"))
            assert cli.events("control")[-1]["request"] == {"subtype": "set_model", "model": "fake-model-2"}
            assert [i.model for i in h.host.of(SessionInfoUpdate) if i.model] == [
                "fake-model-1",
                "fake-model-2",
            ]

    run_async(scenario())


def test_get_models_lists_the_models_of_the_initialize_response(cli):
    models = [{"value": "m-a", "displayName": "Model A", "description": "first"}]

    async def scenario():
        async with cli.harness(models=models) as h:
            await h.runner.get_models()
            assert h.host.of(ModelsList) == [ModelsList(models=[ModelInfo("m-a", "Model A", "first")])]

    run_async(scenario())


def test_a_permission_mode_change_reaches_the_cli_in_sdk_terms(cli):
    async def scenario():
        async with cli.harness() as h:
            await h.runner.set_permission_mode("auto_edits")
            assert h.host.snapshot()[-1] == SessionInfoUpdate(permission_mode="auto_edits")
            await h.turn(h.send("hello"))
            assert cli.events("control")[-1]["request"] == {
                "subtype": "set_permission_mode",
                "mode": "acceptEdits",
            }

    run_async(scenario())


def test_rapid_user_messages_are_sent_one_turn_at_a_time(cli):
    async def scenario():
        async with cli.harness() as h:
            items = [h.send(f"message {i}") for i in range(6)]
            outcomes = [await h.turn(item) for item in items]
            assert [o.result for o in outcomes] == [f"You said: message {i}" for i in range(6)]
            users = cli.events("user")
            assert [u["text"] for u in users] == [f"message {i}" for i in range(6)]
            assert not any(u["busy"] for u in users), "a message reached the CLI mid-turn"

    run_async(scenario())


def test_a_cli_crash_mid_turn_fails_the_turn_waiter_and_the_runner(cli):
    async def scenario():
        h = cli.harness({"crash": [{"tokens": ["a"]}, {"crash": 1}]})
        async with h:
            item = h.send("crash")
            with pytest.raises(RunnerFailed):
                await h.turn(item, timeout=10)
            assert h.task is not None
            await asyncio.wait({h.task}, timeout=CLOSE_BOUND)
            with pytest.raises(RunnerFailed, match="Claude Code failed"):
                h.task.result()

    run_async(scenario())


def test_closing_while_idle_stops_the_cli_within_the_bound(cli):
    async def scenario():
        h = cli.harness()
        await h.__aenter__()
        await h.turn(h.send("hello"))
        assert await h.close() < CLOSE_BOUND
        assert cli.events("exit"), "the CLI did not exit"
        h.task.result()  # a close is not a failure

    run_async(scenario())


def test_closing_mid_turn_stops_the_cli_within_the_bound_and_fails_the_turn_as_closed(cli):
    async def scenario():
        h = cli.harness({"hang": [{"hang": ["partial"]}]})
        await h.__aenter__()
        item = h.send("hang")
        await h.frame(Stream)
        assert await h.close() < CLOSE_BOUND
        with pytest.raises(RunnerClosed):
            await h.turn(item)

    run_async(scenario())


def test_closing_with_an_approval_pending_denies_it_and_stops_within_the_bound(cli):
    async def scenario():
        h = cli.harness({"tool": TOOL})
        await h.__aenter__()
        item = h.send("tool")
        await h.frame(ApprovalRequest)
        assert await h.close() < CLOSE_BOUND
        with pytest.raises(RunnerClosed):
            await h.turn(item)
        answer = cli.events("permission")[0]["answer"]["response"]
        assert (answer["behavior"], answer["message"]) == ("deny", "the session is closing")

    run_async(scenario())


def test_closing_kills_a_cli_that_ignores_the_end_of_its_input(cli):
    async def scenario():
        h = cli.harness(ignore_eof=True)
        await h.__aenter__()
        await h.turn(h.send("hello"))
        took = await h.close()
        assert CLOSE_TIMEOUT <= took < 2 * CLOSE_TIMEOUT
        assert cli.events("ignoring eof") and not cli.events("exit")

    run_async(scenario())


def test_the_cli_gets_the_token_in_its_credentials_file_never_in_its_environment(cli, monkeypatch):
    # A token in the CLI's environment would pin it for the CLI's lifetime
    # (docs/credentials.md); an inherited one is blanked.
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-inherited-token-value")

    async def scenario():
        async with cli.harness(token="sk-ant-oat01-pushed-token-value") as h:
            await h.turn(h.send("hello"))
            assert cli.credentials() == "sk-ant-oat01-pushed-token-value"
            await h.runner.update_token(Secret("sk-ant-oat01-newer-token-value"))
            assert cli.credentials() == "sk-ant-oat01-newer-token-value"
        [start] = cli.events("start")
        assert start["oauth_token"] == ""
        assert (start["config_dir"], start["cwd"]) == (str(cli.dir / "claude"), str(cli.dir))
        assert "--include-partial-messages" in start["argv"]

    run_async(scenario())


def test_the_runner_is_ready_only_once_the_cli_has_answered_its_handshake(cli):
    async def scenario():
        async with cli.harness(token=TOKEN) as h:
            await asyncio.wait_for(h.runner.wait_ready(), 10)
            [start] = cli.events("start")
            assert [c["subtype"] for c in cli.events("control")] == ["initialize"]
            assert not cli.events("user")
            assert start["session_id"] == h.runner.conversation_id

    run_async(scenario())


def test_a_runner_started_before_it_has_a_host_holds_its_frames_and_serves_at_once(cli):
    async def scenario():
        h = cli.harness(token=TOKEN)
        await h.runner.start()  # what a warm-pool agent does before it has a session
        assert len(cli.events("start")) == 1
        await h.runner.set_permission_mode("plan")  # the claimed session's settings
        async with h:
            await asyncio.wait_for(h.runner.wait_ready(), 1)
            assert h.host.snapshot()[0] == SessionInfoUpdate(permission_mode="plan")
            assert (await h.turn(h.send("hello"))).result == "You said: hello"
        assert len(cli.events("start")) == 1

    run_async(scenario())


def test_a_prompt_without_any_token_ends_with_an_error_result_naming_the_fix(cli):
    async def scenario():
        async with cli.harness(token=None, token_wait=0.2) as h:
            await h.runner.wait_ready()  # the CLI is up, logged in with a placeholder
            outcome = await h.turn(h.send("hello"))
            assert outcome.is_error and "No Claude access token" in (outcome.result or "")
            [result] = h.host.of(Result)
            assert result.is_error and "berth serve --claude-dir" in (result.result or "")
            assert not cli.events("user"), "the placeholder must never reach the API"
            await h.runner.update_token(Secret(TOKEN))
            assert (await h.turn(h.send("now"))).result == "You said: now"
            assert cli.credentials() == TOKEN
            assert len(cli.events("start")) == 1

    run_async(scenario())


def test_a_prompt_waiting_for_a_token_goes_on_when_one_arrives(cli):
    async def scenario():
        async with cli.harness(token=None, token_wait=10) as h:
            item = h.send("hello before the token")
            await h.frame(StatusUpdate)
            await h.runner.update_token(Secret(TOKEN))
            assert (await h.turn(item)).result == "You said: hello before the token"

    run_async(scenario())


def test_closing_while_a_prompt_waits_for_a_token_fails_it_as_closed(cli):
    async def scenario():
        h = cli.harness(token=None, token_wait=30)
        await h.__aenter__()
        item = h.send("hello")
        await h.frame(StatusUpdate)
        assert await h.close() < CLOSE_BOUND
        with pytest.raises(RunnerClosed):
            await h.turn(item)
        assert not cli.events("user")
        h.task.result()  # a close is not a failure

    run_async(scenario())


def test_a_permission_mode_the_cli_refuses_is_reported_and_the_mode_in_force_kept(cli):
    async def scenario():
        async with cli.harness(token=TOKEN) as h:
            await h.runner.set_permission_mode("dangerous")
            error = await h.frame(AgentError)
            assert "refused" in error.message and "dangerous" in error.message and not error.fatal
            assert h.host.of(SessionInfoUpdate)[-1] == SessionInfoUpdate(permission_mode="normal")
            await h.turn(h.send("hello"))
            assert h.host.of(SessionInfoUpdate)[-1].permission_mode == "normal"

    run_async(scenario())


def test_with_bypassing_allowed_the_cli_can_be_switched_to_dangerous(cli):
    async def scenario():
        async with cli.harness(token=TOKEN, allow_dangerous=True) as h:
            await h.runner.set_permission_mode("dangerous")
            assert h.host.of(SessionInfoUpdate)[-1] == SessionInfoUpdate(permission_mode="dangerous")
            assert not h.host.of(AgentError)

    run_async(scenario())


def test_every_session_info_update_carries_both_the_model_and_the_mode(cli):
    async def scenario():
        async with cli.harness(token=TOKEN) as h:
            await h.runner.set_permission_mode("plan")
            await h.turn(h.send("hello"))  # init reports the model: the mode must stay in
            await h.runner.set_model("fake-model-2")
            updates = h.host.of(SessionInfoUpdate)
            assert updates[-2:] == [
                SessionInfoUpdate(model="fake-model-1", permission_mode="plan"),
                SessionInfoUpdate(model="fake-model-2", permission_mode="plan"),
            ]

    run_async(scenario())


def test_an_api_retry_notice_reaches_the_server_with_its_reason_and_next_attempt(cli):
    retry: dict[str, Any] = {"attempt": 2, "max_retries": 10, "retry_delay_ms": 4000}
    retry.update({"error_status": 529, "error": "overloaded"})

    async def scenario():
        async with cli.harness({"busy": [{"retry": retry}, {"say": "made it"}]}, token=TOKEN) as h:
            before = time.time()
            assert (await h.turn(h.send("busy"))).result == "made it"
            [notice] = h.host.of(ApiRetry)
            assert (notice.attempt, notice.max_retries, notice.reason, notice.error_status) == (
                2,
                10,
                "overloaded",
                529,
            )
            assert before + 4 <= notice.retry_at <= time.time() + 4

    run_async(scenario())


def test_an_idle_cli_is_parked_and_the_next_prompt_resumes_the_same_conversation(cli):
    async def scenario():
        async with cli.harness(token=TOKEN, park_after=0.3) as h:
            await h.turn(h.send("hello"))
            await asyncio.to_thread(wait_until, lambda: cli.events("exit"), 10, "the CLI to be parked")
            assert h.runner.parked
            await h.runner.set_model("fake-model-2")  # while parked: applied at the resume
            assert (await h.turn(h.send("again"))).result == "You said: again"
            first, second = cli.events("start")
            assert first["session_id"] == second["resumed"] == h.runner.conversation_id
            assert f"--resume={h.runner.conversation_id}" in second["argv"]
            assert second["model"] == "fake-model-2"
            assert len(h.runner.resume_seconds) == 1

    run_async(scenario())


def test_closing_fails_the_turns_still_queued_without_sending_them_to_the_cli(cli):
    async def scenario():
        h = cli.harness({"hang": [{"hang": ["partial"]}]})
        await h.__aenter__()
        items = [h.send("hang"), h.send("queued 1"), h.send("queued 2")]
        await h.frame(Stream)
        assert await h.close() < CLOSE_BOUND
        for item in items:
            with pytest.raises(RunnerClosed):
                await h.turn(item)
        assert [u["text"] for u in cli.events("user")] == ["hang"]

    run_async(scenario())


def test_a_tool_environment_given_after_the_start_is_a_private_file_the_cli_is_pointed_at(cli, tmp_path):
    import os
    import shlex
    import subprocess

    env_file = tmp_path / "berth" / "tool-env.sh"

    async def scenario():
        async with cli.harness(tool_env_file=str(env_file)) as h:
            await h.turn(h.send("hello"))
            h.runner.set_tool_env({"GH_TOKEN": Secret("ghp_it's $secret")})
        [start] = cli.events("start")
        assert start["env_file"] == str(env_file)  # set at the start, written later
        assert env_file.stat().st_mode & 0o777 == 0o600
        sourced = subprocess.run(
            ["sh", "-c", f'. {shlex.quote(str(env_file))} && printf %s "$GH_TOKEN"'],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"]},
        )
        assert sourced.stdout == "ghp_it's $secret"

    run_async(scenario())
