"""What a managed child tells its manager, as pure functions of the child's changes.

A session created by a manager (``managed_by``) returns these ``TellSession``
effects from its core; its actor tells the manager's actor, found in the
published directory (a manager that is gone drops them). Agent traffic is
reported at most once per ``manager_activity_interval``, so a streaming child
costs its manager one message a second, not one per token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
from actors.manager_rules import ManagerRules
from transport.protocol import PendingApproval, SessionStatus

S = SessionStatus


@dataclass(frozen=True)
class ManagedBy:
    """A child's side of the link to its manager."""

    manager_id: str
    last_active_report: float | None = None
    #: The assistant text of the current turn, its latest ``manager_child_output_limit`` characters.
    output: str = ""


def rebased(link: ManagedBy, shift: float) -> ManagedBy:
    """The link on another monotonic clock (after a restart), like ``manager_state.rebased``."""
    last = link.last_active_report
    return link if last is None else replace(link, last_active_report=last + shift)


def started(link: ManagedBy, child_id: str, name: str) -> list[TellSession]:
    return [TellSession(link.manager_id, ChildStarted(child_id, name))]


def agent_traffic(
    link: ManagedBy, child_id: str, now: float, config: ManagerRules
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
        case S.IDLE if old is S.RECONNECTING:
            report = ChildStatus(child_id, new.value)  # back, and waiting: it no longer holds the nudge
        case S.IDLE:
            return []  # a turn's end: ``turn_ended`` reports it, with the output
        case S.ERROR:
            report = ChildFailed(child_id, reason or "the session failed")
        case S.TERMINATED:
            report = ChildEnded(child_id, "terminated")
        case _:
            report = ChildStatus(child_id, new.value)
    return [TellSession(link.manager_id, report)]


def user_message(link: ManagedBy) -> ManagedBy:
    """A new turn: its output starts empty."""
    return replace(link, output="")


def assistant_said(link: ManagedBy, text: str, config: ManagerRules) -> ManagedBy:
    joined = f"{link.output}\n\n{text}" if link.output else text
    return replace(link, output=bounded_tail(joined, config.manager_child_output_limit))


def turn_ended(link: ManagedBy, child_id: str, is_error: bool) -> tuple[ManagedBy, list[TellSession]]:
    report = ChildCompleted(child_id, link.output, is_error)
    return replace(link, output=""), [TellSession(link.manager_id, report)]


def approval_requested(link: ManagedBy, child_id: str, approval: PendingApproval) -> list[TellSession]:
    return [TellSession(link.manager_id, ChildApprovalRequested(child_id, approval))]


def gone(link: ManagedBy, child_id: str, how: str) -> list[TellSession]:
    """Deleted or evicted: the child leaves its manager's list."""
    return [TellSession(link.manager_id, ChildEnded(child_id, how))]


def bounded_tail(text: str, limit: int) -> str:
    """The latest ``limit`` characters of ``text`` (a cut start is marked with …)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
