"""How a session applies the frames its agent sends.

A mixin of SessionActor, kept apart so each module reads at once; it runs on
the session's actor thread and only after the session checked that the frame
came from its current agent link and that the session is not final.
"""

from __future__ import annotations

from typing import Any

from actors.journal import Journal
from transport import protocol as p
from transport.protocol import SessionStatus as S

AGENT_SETTABLE = {
    "running": S.RUNNING,
    "idle": S.IDLE,
    "awaiting_approval": S.AWAITING_APPROVAL,
    "awaiting_answer": S.AWAITING_ANSWER,
}


class AgentFrameHandler:
    session_id: str
    _info: p.SessionInfo
    _journal: Journal
    _pending_approval: p.PendingApproval | None
    _pending_question: p.PendingQuestion | None

    def _set_status(self, status: S, reason: str | None = None) -> None: ...
    def _update_info(self, **changes: Any) -> None: ...
    def _add_message(self, kind: p.MessageKind, content: str, message_id: str | None = None) -> None: ...
    def _record(self, message: p.ChatMessage) -> None: ...
    def _finish(self, status: S, reason: str) -> None: ...

    def handle_frame(self, frame: p.AgentToServer) -> None:
        sid = self.session_id
        match frame:
            case p.Stream(message_id=mid, tokens=tokens):
                self._journal.publish(
                    lambda seq: p.StreamTokens(session_id=sid, seq=seq, message_id=mid, tokens=tokens)
                )
            case p.SdkMessage(message=message):
                self._record(message)
            case p.Ready():
                self._ready()
            case p.SetupProgress(message=text):
                self._add_message("system", text)
            case p.StatusUpdate(status=status):
                if self._info.status is not S.STARTING:
                    self._set_status(AGENT_SETTABLE[status])
            case p.ApprovalRequest(approval=approval):
                self._pending_approval = approval
                self._set_status(S.AWAITING_APPROVAL)
                self._journal.publish(
                    lambda seq: p.ApprovalRequested(session_id=sid, seq=seq, approval=approval)
                )
            case p.Question(question=question):
                self._pending_question = question
                self._set_status(S.AWAITING_ANSWER)
                self._journal.publish(lambda seq: p.QuestionAsked(session_id=sid, seq=seq, question=question))
            case p.Result():
                self._result(frame)
            case p.SessionInfoUpdate():
                self._info_update(frame)
            case p.ModelsList(models=models):
                self._journal.publish(lambda seq: p.ModelsAvailable(session_id=sid, seq=seq, models=models))
            case p.AgentError(message=text, fatal=fatal):
                if fatal:
                    self._finish(S.ERROR, f"Session agent failed: {text}")
                else:
                    self._add_message("error", text)

    def _ready(self) -> None:
        """An agent process says it is ready: at start-up, or after it restarted."""
        if self._info.status is S.STARTING:
            self._add_message("system", "Session container ready")
            self._set_status(S.IDLE)
        elif self._info.status is not S.IDLE:
            self._pending_approval = self._pending_question = None
            self._add_message("system", "The session agent restarted; the turn in progress ended")
            self._set_status(S.IDLE)

    def _result(self, frame: p.Result) -> None:
        self._pending_approval = self._pending_question = None
        total = self._info.total_cost_usd + frame.cost_usd
        self._update_info(
            status=S.IDLE,
            status_reason=None,
            total_cost_usd=total,
            context_usage=frame.context_usage or self._info.context_usage,
        )
        sid = self.session_id
        self._journal.publish(
            lambda seq: p.TurnResult(
                session_id=sid,
                seq=seq,
                result=frame.result,
                cost_usd=frame.cost_usd,
                is_error=frame.is_error,
                context_usage=frame.context_usage,
            )
        )

    def _info_update(self, frame: p.SessionInfoUpdate) -> None:
        changes: dict[str, Any] = {}
        if frame.model is not None:
            changes["model"] = frame.model
        if frame.permission_mode is not None:
            changes["permission_mode"] = frame.permission_mode
        if frame.total_cost_usd is not None:
            changes["total_cost_usd"] = frame.total_cost_usd
        if frame.context_usage is not None:
            changes["context_usage"] = frame.context_usage
        if changes:
            self._update_info(**changes)
