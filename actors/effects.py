"""What a session's pure core asks its actor to do: effects as values.

``actors.session_state.step`` never touches a socket, a timer or another
actor; it returns these, and the SessionActor (a thin shell) carries them out
in order. Keeping them values is what lets the property tests check every
rule without threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.outcome import Rejected
from transport.protocol import ChatMessage, PendingQuestion, ServerToAgent, SessionEvent, SessionInfo


@dataclass(frozen=True)
class SendToAgent:
    """Send on agent link ``link_id`` (the core queues while there is none)."""

    link_id: str
    frame: ServerToAgent


@dataclass(frozen=True)
class CloseAgentLink:
    link_id: str
    code: int
    reason: str


@dataclass(frozen=True)
class PushToken:
    """Send the current OAuth token to the agent on ``link_id``."""

    link_id: str


@dataclass(frozen=True)
class RecordMessage:
    """Append to the session's history (its ``MessageAdded`` is published separately)."""

    message: ChatMessage


@dataclass(frozen=True)
class Publish:
    """Hand a numbered event to the journal (subscribers, log, store)."""

    event: SessionEvent


@dataclass(frozen=True)
class PostInfo:
    """Post the session's latest info where list and get read it."""

    info: SessionInfo


@dataclass(frozen=True)
class StartTimer:
    """Arm timer ``name`` (replacing one of the same name); it delivers ``message``."""

    name: str
    delay: float
    message: Any


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class RequestToken:
    """Ask the TokenActor for a fresh token; the answer is a ``TokenAnswer``."""


@dataclass(frozen=True)
class LaunchContainer:
    """Start the session's container (claim a warm one when a pool exists)."""

    env: Mapping[str, str] = field(default_factory=dict)
    from_pool: bool = False


@dataclass(frozen=True)
class RemoveContainer:
    pass


@dataclass(frozen=True)
class ReportEnded:
    """Tell the supervisor the session reached a final state."""

    info: SessionInfo


@dataclass(frozen=True)
class StopActor:
    """The session is gone (evicted or deleted): tell the supervisor and stop."""

    evicted: bool


@dataclass(frozen=True)
class Reply:
    """The outcome of the command being handled (``None`` = done)."""

    outcome: Rejected | None


@dataclass(frozen=True)
class Persist:
    """The state changed in a way that must survive a restart."""


@dataclass(frozen=True)
class ToAgent:
    """Send on the session's current agent link, or queue while there is none: what a
    sub-core that does not know the link (a manager's) asks; the session core makes
    it a ``SendToAgent``."""

    frame: ServerToAgent


@dataclass(frozen=True)
class AskUser:
    """The server itself asks the session's user ``question`` (a manager's onboarding):
    it becomes the pending question, the status ``awaiting_answer``; the answer
    is not forwarded to the agent."""

    question: PendingQuestion


@dataclass(frozen=True)
class TellSession:
    """Tell another session's actor ``message`` (found in the published directory;
    dropped quietly when that session is gone)."""

    session_id: str
    message: Any


@dataclass(frozen=True)
class EndSession:
    """Ask the supervisor to delete (or terminate) another session: a manager's child."""

    session_id: str
    delete: bool
    reason: str


Effect = (
    SendToAgent
    | CloseAgentLink
    | PushToken
    | RecordMessage
    | Publish
    | PostInfo
    | StartTimer
    | CancelTimer
    | RequestToken
    | LaunchContainer
    | RemoveContainer
    | ReportEnded
    | StopActor
    | Reply
    | Persist
    | ToAgent
    | AskUser
    | TellSession
    | EndSession
)
