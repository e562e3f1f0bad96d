"""What a managed child tells its manager, as pure functions of the child's changes.

A session created by a manager (``managed_by``) returns these ``TellSession``
effects from its core; its actor tells the manager's actor, found in the
published directory (a manager that is gone drops them). Agent traffic is
reported at most once per ``manager_activity_interval``, so a streaming child
costs its manager one message a second, not one per token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from actors.config import BerthConfig
from actors.effects import TellSession
from actors.manager_events import (
    ChildActive,
    ChildApprovalRequested,
    ChildCompleted,
    ChildEnded,
    ChildFailed,
    ChildReady,
    ChildStarted,
    ChildStatus,
)
from transport.protocol import ChatMessage, PendingApproval, SessionStatus

S = SessionStatus


@dataclass(frozen=True)
class ManagedBy:
    """A child's side of the link to its manager."""

    manager_id: str
    last_active_report: float | None = None


def started(link: ManagedBy, child_id: str, name: str) -> list[TellSession]:
    return [TellSession(link.manager_id, ChildStarted(child_id, name))]


def agent_traffic(
    link: ManagedBy, child_id: str, now: float, config: BerthConfig
) -> tuple[ManagedBy, list[TellSession]]:
    last = link.last_active_report
    if last is not None and now - last < config.manager_activity_interval:
        return link, []
    return replace(link, last_active_report=now), [TellSession(link.manager_id, ChildActive(child_id))]


def status_changed(
    link: ManagedBy, child_id: str, old: SessionStatus, new: SessionStatus, reason: str | None
) -> list[TellSession]:
    """The report for a status change (a turn's end is ``turn_ended``, not this)."""
    if new is old:
        return []
    match new:
        case S.IDLE if old is S.STARTING:
            report: object = ChildReady(child_id)
        case S.IDLE:
            return []  # a turn's end: ``turn_ended`` reports it, with the output
        case S.ERROR:
            report = ChildFailed(child_id, reason or "the session failed")
        case S.TERMINATED:
            report = ChildEnded(child_id, "terminated")
        case _:
            report = ChildStatus(child_id, new.value)
    return [TellSession(link.manager_id, report)]


def turn_ended(
    link: ManagedBy, child_id: str, history: Iterable[ChatMessage], is_error: bool, config: BerthConfig
) -> list[TellSession]:
    output = turn_output(history, config.manager_child_output_limit)
    return [TellSession(link.manager_id, ChildCompleted(child_id, output, is_error))]


def approval_requested(link: ManagedBy, child_id: str, approval: PendingApproval) -> list[TellSession]:
    return [TellSession(link.manager_id, ChildApprovalRequested(child_id, approval))]


def gone(link: ManagedBy, child_id: str, how: str) -> list[TellSession]:
    """Deleted or evicted: the child leaves its manager's list."""
    return [TellSession(link.manager_id, ChildEnded(child_id, how))]


def turn_output(history: Iterable[ChatMessage], limit: int) -> str:
    """The assistant text since the last user message, at most ``limit`` characters (the latest)."""
    parts: list[str] = []
    for message in history:
        if message.kind == "user":
            parts = []
        elif message.kind == "assistant":
            parts.append(message.content)
    text = "\n\n".join(parts)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
