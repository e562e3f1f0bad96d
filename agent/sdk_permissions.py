"""Tool approvals and questions, bridged from the SDK's ``can_use_tool`` callback.

For each tool the CLI wants to use, the callback emits ``approval_request``
and waits for the server's answer; ``AskUserQuestion`` becomes a
``question`` whose answers go back as the tool's updated input. Every wait
has a deadline (an unanswered request is denied), and ``deny_all`` settles
everything at once for an interrupt or a close.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.pending import PendingRequests
from transport.protocol import (
    AgentToServer,
    ApprovalRequest,
    PendingApproval,
    PendingQuestion,
    Question,
    QuestionItem,
    QuestionOption,
    StatusUpdate,
)

if TYPE_CHECKING:
    from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny, ToolPermissionContext

    PermissionResult = PermissionResultAllow | PermissionResultDeny

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Decision:
    allow: bool
    message: str | None = None
    interrupt: bool = False


def question_items(tool_input: dict[str, Any]) -> list[QuestionItem]:
    """The ``AskUserQuestion`` input as protocol records (tolerating odd shapes)."""
    items = []
    for raw in tool_input.get("questions") or []:
        if not isinstance(raw, dict):
            continue
        options = [
            QuestionOption(label=str(o.get("label", "")), description=str(o.get("description", "")))
            for o in raw.get("options") or []
            if isinstance(o, dict)
        ]
        items.append(
            QuestionItem(
                question=str(raw.get("question", "")),
                header=str(raw.get("header", "")),
                options=options,
                multi_select=bool(raw.get("multiSelect", False)),
            )
        )
    return items


class PermissionBridge:
    """The ``can_use_tool`` callback and the answers that settle it."""

    def __init__(
        self,
        emit: Callable[[AgentToServer], None],
        timeout: float,
        turn_active: Callable[[], bool],
    ) -> None:
        self._emit = emit
        self._timeout = timeout
        self._turn_active = turn_active
        self._approvals: PendingRequests[_Decision] = PendingRequests()
        self._questions: PendingRequests[dict[str, str] | None] = PendingRequests()
        self._callbacks = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    @property
    def pending(self) -> int:
        return len(self._approvals) + len(self._questions)

    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        self._callbacks += 1
        self._idle.clear()
        try:
            return await self._decide(tool_name, tool_input, context)
        finally:
            self._callbacks -= 1
            if self._callbacks == 0:
                self._idle.set()

    async def _decide(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny

        if self.closing:
            return PermissionResultDeny(message="the session is closing", interrupt=True)
        if tool_name == "AskUserQuestion":
            answers = await self._ask(tool_input)
            if answers is None:
                return PermissionResultDeny(message="the question was not answered")
            return PermissionResultAllow(updated_input={**tool_input, "answers": answers})
        approval_id = uuid.uuid4().hex
        future = self._approvals.open(approval_id)
        approval = PendingApproval(
            id=approval_id,
            tool_name=tool_name,
            tool_input=tool_input,
            timestamp=time.time(),
            reason=context.decision_reason or context.title,
        )
        self._emit(ApprovalRequest(approval=approval))
        self._emit(StatusUpdate(status="awaiting_approval"))
        expired = _Decision(False, "the approval timed out")
        decision = await self._approvals.wait(approval_id, future, self._timeout, expired)
        self._answered()
        if decision.allow:
            return PermissionResultAllow(updated_input=tool_input)
        return PermissionResultDeny(
            message=decision.message or "denied by the user", interrupt=decision.interrupt
        )

    async def _ask(self, tool_input: dict[str, Any]) -> dict[str, str] | None:
        question_id = uuid.uuid4().hex
        future = self._questions.open(question_id)
        pending = PendingQuestion(id=question_id, questions=question_items(tool_input), timestamp=time.time())
        self._emit(Question(question=pending))
        self._emit(StatusUpdate(status="awaiting_answer"))
        answers = await self._questions.wait(question_id, future, self._timeout, None)
        self._answered()
        return answers

    def _answered(self) -> None:
        if self._turn_active() and not self.closing:
            self._emit(StatusUpdate(status="running"))

    def approve(self, approval_id: str, allow: bool, message: str | None) -> None:
        if not self._approvals.resolve(approval_id, _Decision(allow, message)):
            log.warning("approval %s is unknown or already settled", approval_id)

    def answer(self, question_id: str, answers: dict[str, str]) -> None:
        if not self._questions.resolve(question_id, answers):
            log.warning("question %s is unknown or already settled", question_id)

    def deny_all(self, reason: str) -> None:
        self._approvals.resolve_all(_Decision(False, reason, interrupt=True))
        self._questions.resolve_all(None)

    async def settled(self, timeout: float) -> None:
        """Wait (bounded) for callbacks just answered to return, so the CLI
        hears a denial before its input is closed."""
        if self._idle.is_set():
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("permission callbacks still running after %.1f s", timeout)
