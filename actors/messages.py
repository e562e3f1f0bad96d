"""Every message the actors exchange: small frozen dataclasses.

Names are facts (``ContainerStarted``) or commands (``TerminateSession``).
Requests that expect an answer carry ``reply_to``; the answer is a message
told back to it, never a future an actor waits on (architecture rule 1).
Messages marked *ask* are for the edges (host app, transport, tests) only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from actors.secret import Secret
from transport.protocol import (
    AgentToServer,
    Assign,
    ChatMessage,
    PendingApproval,
    PendingQuestion,
    ServerToAgent,
    SessionEvent,
    SessionInfo,
)

if TYPE_CHECKING:
    ActorRef = pykka.ActorRef[Any]
else:
    ActorRef = pykka.ActorRef

#: Receives a session's events; it must not block (it runs on the actor thread).
EventSink = Callable[[Any], None]


class AgentLink(Protocol):
    """One agent connection as an actor sees it: sends never block."""

    @property
    def link_id(self) -> str: ...

    def send(self, frame: ServerToAgent) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class ContainerSettings:
    """A session's own container settings (a named environment), in place of the server's."""

    image: str
    memory: str | None = None
    pids_limit: int | None = None
    #: Extra, non-secret environment, added to the server's ``container_env``.
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SessionSpec:
    """What a user asks for when creating a session."""

    name: str = "session"
    repo_url: str | None = None
    branch: str | None = None
    permission_mode: str = "normal"
    model: str | None = None
    runner: str | None = None
    #: A manager session: it gets a manager token scoped to itself and its children.
    manager: bool = False
    #: The manager session that created this one (set from the manager's token, never by hand).
    managed_by: str | None = None
    #: None: the server's image and resources.
    container: ContainerSettings | None = None


@dataclass(frozen=True)
class SessionView:
    """A session as a client sees it: info, history and pending requests."""

    info: SessionInfo
    history: tuple[ChatMessage, ...]
    pending_approval: PendingApproval | None
    pending_question: PendingQuestion | None
    seq: int
    timers: frozenset[str] = frozenset()
    agent_connected: bool = False


# Supervisor: requests from the edges (ask)


@dataclass(frozen=True)
class CreateSession:
    spec: SessionSpec


@dataclass(frozen=True)
class TerminateSession:
    session_id: str
    reason: str = "terminated by user"


@dataclass(frozen=True)
class DeleteSession:
    session_id: str


@dataclass(frozen=True)
class ForwardToSession:
    """A message for a session the published directory does not list (yet): the
    supervisor's registry has every recovered session before the directory does."""

    session_id: str
    message: Any


@dataclass(frozen=True)
class GetChildren:
    """Ask: the refs of the TokenActor, ContainerActor and PoolActor (or None)."""


@dataclass(frozen=True)
class LookupSession:
    """Ask: the session's directory entry, or None, once every earlier create is published.

    An agent can learn its session id (a pooled agent's ``assign``) before the
    supervisor has published the session it just created; asking is the
    barrier that tells "not published yet" from "unknown".
    """

    session_id: str


@dataclass(frozen=True)
class ShutdownTree:
    """Terminate every session and remove every container (ask)."""


class InfoCell:
    """A session's latest info: written by the session, read by list and get.

    The supervisor creates it and drops it from the registry; a session that
    writes after that writes into a cell nobody lists any more."""

    __slots__ = ("info",)

    def __init__(self, info: SessionInfo) -> None:
        self.info = info


@dataclass(frozen=True)
class SessionEntry:
    """A session as the edges find it in the directory: a live actor or a tombstone."""

    session_id: str
    ref: ActorRef | None
    agent_token: Secret
    final_view: SessionView | None = None
    #: Sessions only (pool slots have none).
    cell: InfoCell | None = None
    #: A manager session's API token (scoped to it and its children).
    manager_token: Secret | None = None


# Supervisor: facts from sessions


@dataclass(frozen=True)
class SessionChanged:
    info: SessionInfo


@dataclass(frozen=True)
class SessionEvicted:
    session_id: str


@dataclass(frozen=True)
class SessionCrashed:
    session_id: str
    final_view: SessionView
    reason: str


@dataclass(frozen=True)
class ChildFailed:
    """A child of the supervisor (token, container, pool) died of ``reason``."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Probe:
    """Ask (tests' settle barrier): ``(messages handled, messages waiting)``."""


# Session: commands from the edges


@dataclass(frozen=True)
class SendUserMessage:
    content: str


@dataclass(frozen=True)
class AnswerApproval:
    approval_id: str
    allow: bool
    message: str | None = None


@dataclass(frozen=True)
class AnswerQuestion:
    question_id: str
    answers: Mapping[str, str]


@dataclass(frozen=True)
class InterruptTurn:
    pass


@dataclass(frozen=True)
class ChangeSettings:
    name: str | None = None
    permission_mode: str | None = None


@dataclass(frozen=True)
class ChangeModel:
    model: str | None


@dataclass(frozen=True)
class RequestModels:
    pass


@dataclass(frozen=True)
class Terminate:
    reason: str


@dataclass(frozen=True)
class Delete:
    """Stop now: cancel every timer, remove the container, stop the actor."""


@dataclass(frozen=True)
class Subscribe:
    sink: EventSink
    since: int | None = None


@dataclass(frozen=True)
class Unsubscribe:
    sink: EventSink


@dataclass(frozen=True)
class ReplayKept:
    """Hand ``sink`` every event the session's journal still keeps, in one call on
    the session's thread: no event of that session is published meanwhile, so a
    view rebuilt from them (the /v1/ API after a restart) misses and repeats nothing."""

    sink: Callable[[tuple[SessionEvent, ...]], None]


@dataclass(frozen=True)
class Command:
    """A command told (not asked) from a transport thread; the outcome
    (``None`` or ``Rejected``) is handed to ``reply`` on the actor's thread,
    which must not block. Saves the asking thread's wake-up on the relay path."""

    command: Any
    reply: Callable[[Any], None]


@dataclass(frozen=True)
class GetView:
    """Ask: the session's ``SessionView``."""


# Session: facts from agents (the transport tells these)


@dataclass(frozen=True)
class AgentAttached:
    link: AgentLink


@dataclass(frozen=True)
class AgentConnected:
    """What the session core sees of ``AgentAttached``: the link's id, and the highest
    numbered frame its agent already has (``X-Berth-Received``; issue 9)."""

    link_id: str
    received: int = 0


@dataclass(frozen=True)
class AgentDetached:
    link_id: str
    reason: str = "connection closed"


@dataclass(frozen=True)
class FromAgent:
    link_id: str
    frame: AgentToServer


@dataclass(frozen=True)
class LinkStored:
    """The store committed everything the agent sent on ``link_id`` up to ``received``."""

    link_id: str
    received: int


@dataclass(frozen=True)
class FromAgentBatch:
    """Every frame one socket read brought, in order: one mailbox hand-off per read."""

    link_id: str
    frames: tuple[AgentToServer, ...]


@dataclass(frozen=True)
class SessionFailed:
    """The session's own code raised: it ends in ``error`` with this reason."""

    reason: str


@dataclass(frozen=True)
class TokenServiceRestarted:
    """The TokenActor was replaced; a session still waiting for a token asks again."""


# Session: its own timers


@dataclass(frozen=True)
class RetryToken:
    pass


@dataclass(frozen=True)
class StartupTimedOut:
    pass


@dataclass(frozen=True)
class EvictionDue:
    pass


@dataclass(frozen=True)
class ReconnectGraceExpired:
    pass


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class EnsureFreshToken:
    reply_to: ActorRef


@dataclass(frozen=True)
class TokenAnswer:
    token: Secret | None
    reason: str | None = None


@dataclass(frozen=True)
class SubscribeTokens:
    ref: ActorRef


@dataclass(frozen=True)
class UnsubscribeTokens:
    ref: ActorRef


@dataclass(frozen=True)
class TokenRefreshed:
    token: Secret


@dataclass(frozen=True)
class TokenRefreshFailed:
    reason: str


@dataclass(frozen=True)
class GetTokenStatus:
    """Ask: a ``TokenStatus``."""


@dataclass(frozen=True)
class TokenStatus:
    source: str
    masked_token: str | None
    expires_at_ms: int | None
    last_error: str | None
    #: A refresh request is in flight.
    refreshing: bool = False
    #: Seconds until a new refresh attempt is allowed (None: allowed now).
    retry_in: float | None = None


# ---------------------------------------------------------------- containers


@dataclass(frozen=True)
class StartContainer:
    session_id: str
    reply_to: ActorRef
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    settings: ContainerSettings | None = None


@dataclass(frozen=True)
class ContainerStarted:
    session_id: str
    container_id: str


@dataclass(frozen=True)
class ContainerStartFailed:
    session_id: str
    reason: str


@dataclass(frozen=True)
class ContainerExited:
    session_id: str
    container_id: str
    exit_code: int
    #: What the container last said about it (``actors.exit_output``); "" if nothing.
    why: str = ""


@dataclass(frozen=True)
class ContainerLost:
    """After a restart: the session's container is gone or cannot be used again."""

    reason: str


@dataclass(frozen=True)
class TransferContainer:
    """Hand the container tracked as ``from_key`` (a pool slot) to session ``to_key``;
    ``secrets`` join its secrets dir, so a restarted server finds them (issue 9)."""

    from_key: str
    to_key: str
    owner: ActorRef
    secrets: Mapping[str, Secret] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoveContainer:
    session_id: str


@dataclass(frozen=True)
class ReapOrphans:
    keep: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AdoptContainers:
    """To a replacement ContainerActor: track the containers of these live
    sessions again (their owners), and remove every other one of this instance."""

    owners: Mapping[str, ActorRef]


@dataclass(frozen=True)
class ListContainers:
    """Ask: ids of the containers the actor tracks, by session."""


# ---------------------------------------------------------------- warm pool


@dataclass(frozen=True)
class ClaimContainer:
    """A session asks the pool for a running container; answered by the
    ContainerActor's ``ContainerStarted`` (after the transfer) or ``PoolEmpty``."""

    session_id: str
    reply_to: ActorRef
    assignment: Assign


@dataclass(frozen=True)
class PoolEmpty:
    session_id: str


@dataclass(frozen=True)
class PoolAgentAttached:
    slot: str
    link: AgentLink


@dataclass(frozen=True)
class SessionsCounted:
    live: int


@dataclass(frozen=True)
class PoolStatus:
    """Ask: counts of the pool's slots and what happened to them."""
