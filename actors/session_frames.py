"""How a session applies the frames its agent sends: pure rules on a step.

Only frames from the session's current link reach here, and only while the
session is not final. The agent is not trusted to author the user's words or
to make money appear: ``user`` messages and costs that are negative or not
finite are refused here whatever the transport checked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from actors.session_state import AwaitingAnswer, AwaitingApproval, Idle, Live, Running, Starting
from transport import protocol as p

if TYPE_CHECKING:
    from actors.session_core import _Step


def apply_frame(s: _Step, frame: p.AgentToServer) -> None:
    sid = s.s.session_id
    live = isinstance(s.s.lifecycle, Live)
    match frame:
        case p.Stream(message_id=mid, tokens=tokens):
            s.publish(lambda seq: p.StreamTokens(session_id=sid, seq=seq, message_id=mid, tokens=tokens))
        case p.SdkMessage(message=message):
            if message.kind != "user":
                s.record(message)
        case p.Ready():
            ready(s)
        case p.SetupProgress(message=text):
            s.note("system", text)
        case p.StatusUpdate(status="running") if live:
            s.set(turn=Running())
        case p.StatusUpdate(status="idle") if live:
            s.set(turn=Idle())
        case p.StatusUpdate():
            pass  # waiting states come with their request, never bare
        case p.ApprovalRequest(approval=approval) if live:
            s.set(turn=AwaitingApproval(approval))
            s.publish_info()
            s.publish(lambda seq: p.ApprovalRequested(session_id=sid, seq=seq, approval=approval))
        case p.Question(question=question) if live:
            s.set(turn=AwaitingAnswer(question))
            s.publish_info()
            s.publish(lambda seq: p.QuestionAsked(session_id=sid, seq=seq, question=question))
        case p.Result() if live:
            result(s, frame)
        case p.SessionInfoUpdate():
            info_update(s, frame)
        case p.ApiRetry() if live:
            api_retry(s, frame)
        case p.RateLimit(status=status, resets_at=resets_at, limit_type=limit_type) if live:
            s.publish(
                lambda seq: p.RateLimited(
                    session_id=sid, seq=seq, status=status, resets_at=resets_at, limit_type=limit_type
                )
            )
            if status == "rejected":
                s.note("error", f"Claude's rate limit was reached ({limit_type or 'usage'}); requests wait")
        case p.ModelsList(models=models):
            s.publish(lambda seq: p.ModelsAvailable(session_id=sid, seq=seq, models=models))
        case p.AgentError(message=text, fatal=True):
            s.end(p.SessionStatus.ERROR, f"Session agent failed: {text}")
        case p.AgentError(message=text):
            s.note("error", text)
        case _:
            pass  # a turn frame before ``ready``: nothing to apply it to


def ready(s: _Step) -> None:
    """An agent process says it is ready: at start-up, or after it restarted."""
    if isinstance(s.s.lifecycle, Starting):
        s.set(lifecycle=Live(), turn=Idle())
        s.disarm("startup")
        s.note("system", "Session container ready")
        s.flush_queue()
        return
    if not isinstance(s.s.turn, Idle):
        s.set(turn=Idle())
        reason = "The session agent restarted; the turn in progress ended"
        s.note("system", reason)
        sid = s.s.session_id
        s.publish(lambda seq: p.TurnResult(session_id=sid, seq=seq, result=reason, is_error=True))


def api_retry(s: _Step, frame: p.ApiRetry) -> None:
    """A failed Messages API request the CLI retries: the client sees why and when."""
    sid = s.s.session_id
    s.publish(
        lambda seq: p.ApiRetrying(
            session_id=sid,
            seq=seq,
            attempt=frame.attempt,
            max_retries=frame.max_retries,
            retry_at=frame.retry_at,
            reason=frame.reason,
            error_status=frame.error_status,
        )
    )
    wait = max(0.0, frame.retry_at - s.now.wall)
    status = f" (HTTP {frame.error_status})" if frame.error_status else ""
    s.note(
        "system",
        f"Claude API request failed: {frame.reason}{status}; retry {frame.attempt} of "
        f"{frame.max_retries} in {wait:.1f} s",
    )


def _money(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def result(s: _Step, frame: p.Result) -> None:
    cost = _money(frame.cost_usd) or 0.0
    s.set(turn=Idle())
    s.info(
        total_cost_usd=s.s.info.total_cost_usd + cost,
        context_usage=frame.context_usage or s.s.info.context_usage,
    )
    s.publish_info()
    sid = s.s.session_id
    s.publish(
        lambda seq: p.TurnResult(
            session_id=sid,
            seq=seq,
            result=frame.result,
            cost_usd=cost,
            is_error=frame.is_error,
            context_usage=frame.context_usage,
        )
    )


def info_update(s: _Step, frame: p.SessionInfoUpdate) -> None:
    changes: dict[str, object] = {}
    if frame.model is not None:
        changes["model"] = frame.model
    if frame.permission_mode is not None:
        changes["permission_mode"] = frame.permission_mode
    total = _money(frame.total_cost_usd)
    if total is not None:
        changes["total_cost_usd"] = total
    if frame.context_usage is not None:
        changes["context_usage"] = frame.context_usage
    if changes:
        s.info(**changes)
