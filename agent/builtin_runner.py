"""A runner that needs no network: deterministic replies for demos and tests.

It speaks the same frames as the SDK runner, so the whole relay (agent,
server, clients) can be exercised and benchmarked without Claude. A plain
prompt is echoed back ("You said: ...") one word per ``stream`` frame. A
prompt that starts with a command does something else:

- ``/tool <name> <arg>``: asks for a tool approval, then reports the result
- ``/ask <question>``: asks a question and reports the answer
- ``/stream N``: streams N tokens as fast as possible (throughput benchmark)
- ``/slow N``: streams N tokens with a delay each (to interrupt mid-stream)
- ``/crash``: the runner loop dies mid-turn (the fatal-error path)
- ``/quiet``: a ``result`` frame and nothing else (round-trip benchmark)

A manager session's built-in runner (``manager_api`` given) is a scripted
manager: each ``/<tool> {json}`` line of a prompt (``create_child``,
``message_child``, ... of ``agent.manager_tools``) calls that tool, exactly
as Claude would through the SDK runner's MCP server; other prompts (the
events and nudges Berth sends a manager) are echoed.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from actors.secret import Secret
from agent import manager_tools
from agent.channel import InputChannel
from agent.pending import PendingRequests
from agent.runner import RunnerClosed, RunnerFailed, RunnerHost, TurnOutcome, UserInput, fail_remaining
from transport.protocol import (
    AgentToServer,
    ApprovalRequest,
    ChatMessage,
    ContextUsage,
    MessageKind,
    ModelInfo,
    ModelsList,
    PendingApproval,
    PendingQuestion,
    PermissionMode,
    Question,
    QuestionItem,
    QuestionOption,
    Result,
    SdkMessage,
    SessionInfoUpdate,
    StatusUpdate,
    Stream,
)

MODELS = [
    ModelInfo(value="builtin-echo", display_name="Built-in echo", description="Echoes the prompt"),
    ModelInfo(value="builtin-echo-2", display_name="Built-in echo 2", description="The same, renamed"),
]
CONTEXT_WINDOW = 200_000


@dataclass(frozen=True)
class BuiltinConfig:
    token_delay: float = 0.0
    slow_delay: float = 0.05
    approval_timeout: float = 300.0
    model: str = "builtin-echo"
    permission_mode: PermissionMode = "normal"


@dataclass(frozen=True)
class _Decision:
    allow: bool
    message: str | None = None


class _Crash(RuntimeError):
    """What ``/crash`` raises inside the turn."""


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


class BuiltinRunner:
    """Echo-style runner; one turn at a time, interruptible."""

    def __init__(
        self, config: BuiltinConfig | None = None, manager_api: manager_tools.ManagerApi | None = None
    ) -> None:
        self._config = config or BuiltinConfig()
        self._manager_api = manager_api
        self._model = self._config.model
        self._mode: PermissionMode = self._config.permission_mode
        self._host: RunnerHost | None = None
        self._channel: InputChannel[UserInput] | None = None
        self._turn_task: asyncio.Task[TurnOutcome] | None = None
        self._interrupted = False
        self._closing = False
        self._stopped = asyncio.Event()
        self._running = asyncio.Event()
        self._started = False
        self._approvals: PendingRequests[_Decision] = PendingRequests()
        self._questions: PendingRequests[dict[str, str] | None] = PendingRequests()
        self._ids = itertools.count(1)
        self.token: Secret | None = None

    # ------------------------------------------------------------------ run

    async def run(self, channel: InputChannel[UserInput], host: RunnerHost) -> None:
        self._channel, self._host, self._started = channel, host, True
        self._running.set()
        try:
            if self._closing:
                channel.close()
            host.emit(SessionInfoUpdate(model=self._model, permission_mode=self._mode))
            async for item in channel:
                if self._closing:
                    item.fail(RunnerClosed("the runner closed before this turn"))
                    continue
                await self._serve(item)
        finally:
            self._stopped.set()

    async def _serve(self, item: UserInput) -> None:
        task = asyncio.create_task(self._turn(item))
        self._turn_task, self._interrupted = task, False
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            item.fail(RunnerClosed("the runner was cancelled mid-turn"))
            raise
        finally:
            self._turn_task = None
        if task.cancelled():
            if self._interrupted and not self._closing:
                self._emit(Result(result="interrupted", is_error=True))
                item.finish(TurnOutcome("interrupted", is_error=True))
            else:
                item.fail(RunnerClosed("the runner closed mid-turn"))
            return
        error = task.exception()
        if error is not None:
            failure = RunnerFailed(f"the built-in runner died mid-turn: {error}")
            item.fail(failure)
            raise failure from error
        item.finish(task.result())

    def _emit(self, frame: AgentToServer) -> None:
        assert self._host is not None, "emit before run()"
        self._host.emit(frame)

    # ----------------------------------------------------------------- turns

    async def _turn(self, item: UserInput) -> TurnOutcome:
        started = time.monotonic()
        text = item.content.strip()
        command, _, rest = text.partition(" ")
        if command == "/quiet":
            self._emit(Result(result="", context_usage=self._usage(text, 0, started)))
            return TurnOutcome("")
        self._emit(StatusUpdate(status="running"))
        delay, result = self._config.token_delay, None
        calls = manager_tools.scripted_calls(text) if self._manager_api is not None else []
        if calls:
            reply = await self._manager_script(calls)
        elif command == "/tool":
            name, _, arg = rest.partition(" ")
            reply = await self._tool(name or "Bash", arg)
        elif command == "/ask":
            reply = await self._ask(rest or "Continue?")
        elif command in ("/stream", "/slow"):
            count = int(rest) if rest.strip().isdigit() else 10
            reply = "".join(f"t{i} " for i in range(count))
            delay = 0.0 if command == "/stream" else self._config.slow_delay
            result = f"streamed {count} tokens"
        elif command == "/crash":
            await self._stream(f"builtin-{next(self._ids)}", ["about to crash "], 0.0)
            raise _Crash("/crash asked the runner to die")
        else:
            reply = f"You said: {text}"
        tokens = _words(reply)
        message_id = f"builtin-{next(self._ids)}"
        await self._stream(message_id, tokens, delay)
        self._message(message_id, "assistant", reply)
        outcome = TurnOutcome(result if result is not None else reply)
        self._emit(Result(result=outcome.result, context_usage=self._usage(text, len(tokens), started)))
        return outcome

    async def _stream(self, message_id: str, tokens: list[str], delay: float) -> None:
        sent: list[str] = []
        try:
            for token in tokens:
                self._emit(Stream(message_id=message_id, tokens=[token]))
                sent.append(token)
                if delay > 0:
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if sent:
                self._message(message_id, "assistant", "".join(sent))
            raise

    async def _tool(self, name: str, arg: str) -> str:
        call_id = f"tool-{uuid.uuid4().hex[:12]}"
        tool_input: dict[str, Any] = {"command": arg}
        self._message(call_id, "tool_call", f"{name} {arg}".strip(), tool_name=name, tool_input=tool_input)
        if self._mode == "dangerous":
            decision = _Decision(True)
        else:
            approval_id = uuid.uuid4().hex
            future = self._approvals.open(approval_id)
            approval = PendingApproval(
                id=approval_id, tool_name=name, tool_input=tool_input, timestamp=time.time()
            )
            self._emit(ApprovalRequest(approval=approval))
            self._emit(StatusUpdate(status="awaiting_approval"))
            timeout = _Decision(False, "approval timed out")
            decision = await self._approvals.wait(approval_id, future, self._config.approval_timeout, timeout)
            self._emit(StatusUpdate(status="running"))
        if decision.allow:
            self._message(f"{call_id}-result", "tool_result", f"{name} ran: {arg}", tool_use_id=call_id)
            return f"Tool {name} ran."
        reason = decision.message or "denied"
        self._message(
            f"{call_id}-result", "tool_result", f"denied: {reason}", tool_use_id=call_id, is_error=True
        )
        return f"Tool {name} was denied: {reason}"

    async def _manager_script(self, calls: list[tuple[str, dict[str, Any] | str]]) -> str:
        assert self._manager_api is not None
        results = []
        for name, args in calls:
            call_id = f"tool-{uuid.uuid4().hex[:12]}"
            tool_input = args if isinstance(args, dict) else {}
            full_name = f"mcp__{manager_tools.SERVER_NAME}__{name}"
            self._message(call_id, "tool_call", name, tool_name=full_name, tool_input=tool_input)
            if isinstance(args, str):
                text, is_error = f"{name}: {args}", True
            else:
                text, is_error = await asyncio.to_thread(
                    manager_tools.run_tool, self._manager_api, name, args
                )
            self._message(f"{call_id}-result", "tool_result", text, tool_use_id=call_id, is_error=is_error)
            results.append(text)
        return "\n".join(results)

    async def _ask(self, question: str) -> str:
        question_id = uuid.uuid4().hex
        future = self._questions.open(question_id)
        item = QuestionItem(
            question=question,
            header="Question",
            options=[QuestionOption(label="yes"), QuestionOption(label="no")],
        )
        pending = PendingQuestion(id=question_id, questions=[item], timestamp=time.time())
        self._emit(Question(question=pending))
        self._emit(StatusUpdate(status="awaiting_answer"))
        answers = await self._questions.wait(question_id, future, self._config.approval_timeout, None)
        self._emit(StatusUpdate(status="running"))
        if not answers:
            return "No answer."
        return "You answered: " + "; ".join(f"{q} = {a}" for q, a in answers.items())

    def _message(
        self,
        message_id: str,
        kind: MessageKind,
        content: str,
        tool_name: str | None = None,
        tool_input: dict[str, Any] | None = None,
        tool_use_id: str | None = None,
        is_error: bool = False,
    ) -> None:
        message = ChatMessage(
            id=message_id,
            kind=kind,
            content=content,
            timestamp=time.time(),
            tool_name=tool_name,
            tool_input=tool_input,
            tool_use_id=tool_use_id or (message_id if kind == "tool_call" else None),
            is_error=is_error,
        )
        self._emit(SdkMessage(message=message))

    @staticmethod
    def _usage(prompt: str, output_tokens: int, started: float) -> ContextUsage:
        return ContextUsage(
            input_tokens=len(prompt.split()),
            output_tokens=output_tokens,
            context_window=CONTEXT_WINDOW,
            num_turns=1,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    # --------------------------------------------------------------- control

    async def wait_ready(self) -> None:
        """Always ready: nothing to start."""

    async def approval_response(self, approval_id: str, allow: bool, message: str | None) -> None:
        self._approvals.resolve(approval_id, _Decision(allow, message))

    async def question_response(self, question_id: str, answers: dict[str, str]) -> None:
        self._questions.resolve(question_id, answers)

    async def interrupt(self) -> None:
        task = self._turn_task
        if task is not None and not task.done():
            self._interrupted = True
            task.cancel()

    async def set_model(self, model: str | None) -> None:
        await self._running.wait()
        self._model = model or self._config.model
        self._emit(SessionInfoUpdate(model=self._model))

    async def get_models(self) -> None:
        await self._running.wait()
        self._emit(ModelsList(models=MODELS))

    async def set_permission_mode(self, mode: PermissionMode) -> None:
        await self._running.wait()
        self._mode = mode
        self._emit(SessionInfoUpdate(permission_mode=mode))

    async def update_token(self, token: Secret) -> None:
        self.token = token

    async def close(self) -> None:
        self._closing = True
        self._approvals.resolve_all(_Decision(False, "the session is closing"))
        self._questions.resolve_all(None)
        if self._channel is not None:
            self._channel.close()
        if self._turn_task is not None:
            self._turn_task.cancel()
        if self._started:
            await self._stopped.wait()
        if self._channel is not None:
            fail_remaining(self._channel, RunnerClosed("the runner closed before this turn"))
