"""What a manager session hears: reports from its children, its own turns,
its commands and its timers, as small frozen messages.

Children tell their manager's actor (looked up in the published directory)
the ``Child*`` facts; the manager's core turns the ones worth a turn into the
texts below, which reach the manager's agent as user messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transport.protocol import PendingApproval

# ---------------------------------------------------------------- from children


@dataclass(frozen=True)
class ChildStarted:
    """A child session of this manager exists (told by the child as it starts)."""

    child_id: str
    name: str


@dataclass(frozen=True)
class ChildReady:
    child_id: str


@dataclass(frozen=True)
class ChildStatus:
    """A child's status changed (not to ``error``/``terminated``: those are below)."""

    child_id: str
    status: str


@dataclass(frozen=True)
class ChildActive:
    """The child's agent sent something (children report this at most once per
    ``manager_activity_interval``)."""

    child_id: str


@dataclass(frozen=True)
class ChildCompleted:
    """A turn of the child ended; ``output`` is its assistant text of that turn."""

    child_id: str
    output: str
    is_error: bool = False


@dataclass(frozen=True)
class ChildApprovalRequested:
    child_id: str
    approval: PendingApproval


@dataclass(frozen=True)
class ChildFailed:
    child_id: str
    reason: str


@dataclass(frozen=True)
class ChildEnded:
    """The child was terminated, deleted or evicted: it leaves its manager's list."""

    child_id: str
    how: str


# ---------------------------------------------------------------- the manager itself


@dataclass(frozen=True)
class ManagerReady:
    """The manager's agent said ``ready`` (onboarding starts on the first one)."""


@dataclass(frozen=True)
class OnboardingAnswered:
    answers: Mapping[str, str]


@dataclass(frozen=True)
class ManagerTurnStarted:
    """Someone else (a user) sent the manager a message: it is busy."""


@dataclass(frozen=True)
class ManagerTurnEnded:
    """The manager's turn ended (its ``result``)."""

    output_tokens: int | None = None


@dataclass(frozen=True)
class ManagerInterrupted:
    pass


@dataclass(frozen=True)
class PauseManager:
    """Stop auto-continue and event delivery; resume by itself at ``resume_at``
    (Unix time, within ``manager_max_pause``) if given."""

    resume_at: float | None = None


@dataclass(frozen=True)
class ResumeManager:
    pass


@dataclass(frozen=True)
class ReportStep:
    step: str


@dataclass(frozen=True)
class ManagerEnded:
    """The manager was deleted or terminated: every manager timer ends, its
    children are ended (or orphaned), and nothing is sent any more."""

    deleted: bool


# ---------------------------------------------------------------- timers


@dataclass(frozen=True)
class BatchDue:
    pass


@dataclass(frozen=True)
class ContinueDue:
    pass


@dataclass(frozen=True)
class ResumeDue:
    pass


@dataclass(frozen=True)
class ChildStaleDue:
    child_id: str


@dataclass(frozen=True)
class ManagerGone:
    """Told to a child whose manager ended and left it running (orphaned)."""

    manager_id: str


ManagerInput = (
    ChildStarted
    | ChildReady
    | ChildStatus
    | ChildActive
    | ChildCompleted
    | ChildApprovalRequested
    | ChildFailed
    | ChildEnded
    | ManagerReady
    | OnboardingAnswered
    | ManagerTurnStarted
    | ManagerTurnEnded
    | ManagerInterrupted
    | PauseManager
    | ResumeManager
    | ReportStep
    | ManagerEnded
    | BatchDue
    | ContinueDue
    | ResumeDue
    | ChildStaleDue
)

STEPS = ("idle", "exploring", "triaging", "planning", "reviewing", "fixing", "testing", "merging", "done")

# ---------------------------------------------------------------- texts for the manager


def bounded(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n...(truncated, {len(text) - limit} more characters)"


def ready_text(name: str, child_id: str) -> str:
    return (
        f'[CHILD SESSION READY] "{name}" ({child_id}) is ready. Give it its instructions with message_child.'
    )


def completed_text(name: str, child_id: str, output: str, is_error: bool, limit: int) -> str:
    how = "ended its turn with an error" if is_error else "completed its turn"
    body = bounded(output.strip(), limit) if output.strip() else "(no output captured)"
    return (
        f'[CHILD SESSION COMPLETED] "{name}" ({child_id}) {how}.\n'
        f"--- Child Output ---\n{body}\n--- End Child Output ---"
    )


def failed_text(name: str, child_id: str, reason: str) -> str:
    return f'[CHILD SESSION ERROR] "{name}" ({child_id}) failed: {reason}. It has left your list of children.'


def stale_text(name: str, child_id: str, idle_for: float) -> str:
    return (
        f'[CHILD SESSION STALE] "{name}" ({child_id}) has sent nothing for {idle_for:g} s. '
        "Check it with child_status; message, interrupt or end it."
    )


def approval_text(name: str, child_id: str, approval: PendingApproval, limit: int) -> str:
    tool_input: Any = approval.tool_input
    lines = [
        f'[CHILD APPROVAL REQUEST] "{name}" ({child_id}) asks to use {approval.tool_name}.',
        "Input:",
        bounded(json.dumps(tool_input, indent=2, ensure_ascii=False, default=str), limit),
    ]
    if approval.reason:
        lines.append("Reason: " + bounded(approval.reason, limit))
    lines.append(f"Approval ID: {approval.id}")
    lines.append("Answer it with answer_child_approval.")
    return "\n".join(lines)
