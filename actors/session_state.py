"""A session as a value: three independent parts, and the one public status.

The old single status enum mixed three things that change independently —
the session's lifecycle, its agent link and its turn — and every race it had
came from one of them overwriting another (an approval answered while the
agent was reconnecting made the session ``running`` with no agent). Here
each part is its own field, and ``SessionInfo.status`` is derived from all
three in ``status_of`` and nowhere else.

Everything here is immutable; ``actors.session_core.step`` is the only thing
that makes a new state from an old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from msgspec.structs import replace as replace_struct

from actors.child_reports import ManagedBy
from actors.config import BerthConfig
from actors.manager_rules import ManagerRules
from actors.manager_state import ManagerState, manager_info
from actors.messages import SessionSpec
from actors.secret import Secret
from transport.protocol import NumberedToAgent, PendingApproval, PendingQuestion, ServerToAgent, SessionInfo
from transport.protocol import SessionStatus as S

#: Runners that never call the Messages API, so never need an OAuth token.
TOKENLESS_RUNNERS = frozenset({"builtin"})


@dataclass(frozen=True)
class Instant:
    """``mono`` measures durations (the injectable clock); ``wall`` stamps records."""

    mono: float
    wall: float


@dataclass(frozen=True)
class SessionRules:
    """The part of the configuration the rules read, fixed for a session's life."""

    image: str
    startup_timeout: float
    eviction_ttl: float
    reconnect_grace: float
    token_retry_delay: float
    needs_token: bool
    use_pool: bool
    prompt_chars: int
    agent_queue_limit: int = 1000
    #: Bytes of frames the agent has not acknowledged (held or sent) before commands are refused.
    unacked_bytes: int = 4 * 1024 * 1024
    manager: ManagerRules = field(default_factory=lambda: ManagerRules.of(BerthConfig()))

    @classmethod
    def of(cls, config: BerthConfig, spec: SessionSpec, use_pool: bool) -> SessionRules:
        runner = spec.runner or config.agent_runner
        return cls(
            image=config.image,
            startup_timeout=config.startup_timeout,
            eviction_ttl=config.eviction_ttl,
            reconnect_grace=config.reconnect_grace,
            token_retry_delay=config.token_retry_delay,
            needs_token=runner not in TOKENLESS_RUNNERS,
            prompt_chars=config.max_prompt_chars,
            unacked_bytes=config.agent_unacked_bytes,
            agent_queue_limit=config.agent_unacked_frames,
            # A manager's token file, or a session's own image, needs a cold start.
            use_pool=use_pool and not spec.manager and spec.container is None,
            manager=ManagerRules.of(config),
        )


# ---------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class Starting:
    """The container is being set up; the agent has not said ``ready`` yet."""


@dataclass(frozen=True)
class Live:
    """The agent said ``ready``: the session takes prompts."""


@dataclass(frozen=True)
class Ended:
    """Final: nothing but deletion or eviction changes the session again."""

    status: S
    reason: str


Lifecycle = Starting | Live | Ended


# ---------------------------------------------------------------- agent link


@dataclass(frozen=True)
class NoAgent:
    pass


@dataclass(frozen=True)
class Connected:
    link_id: str


@dataclass(frozen=True)
class Reconnecting:
    """The agent dropped; it has until ``deadline`` (clock time) to come back."""

    deadline: float
    reason: str


Link = NoAgent | Connected | Reconnecting


# ---------------------------------------------------------------- turn


@dataclass(frozen=True)
class Idle:
    pass


@dataclass(frozen=True)
class Running:
    pass


@dataclass(frozen=True)
class AwaitingApproval:
    approval: PendingApproval


@dataclass(frozen=True)
class AwaitingAnswer:
    question: PendingQuestion


Turn = Idle | Running | AwaitingApproval | AwaitingAnswer


class ContainerPhase:
    """Where the session's container is (plain strings, so a store can keep them)."""

    NONE = "none"
    REQUESTED = "requested"
    RUNNING = "running"
    REMOVED = "removed"


_NO_TIMERS: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class SessionState:
    session_id: str
    spec: SessionSpec
    rules: SessionRules
    info: SessionInfo
    lifecycle: Lifecycle = Starting()
    link: Link = NoAgent()
    turn: Turn = Idle()
    container: str = ContainerPhase.NONE
    container_id: str | None = None
    #: The last event number handed out; the journal numbers nothing itself.
    seq: int = 0
    #: Counter for the ids of messages the session itself writes.
    ids: int = 0
    #: The current OAuth access token (never stored, never logged).
    token: Secret | None = None
    token_attempts: int = 0
    #: Which token went to which link, so each link gets each token once.
    pushed: tuple[str, Secret] | None = None
    #: Frames for the agent held while it is reconnecting, in order.
    agent_queue: tuple[ServerToAgent, ...] = ()
    #: The link number of the last frame sent to the agent (issue 9, ``actors.link_outbound``).
    link_out: int = 0
    #: Frames sent to the agent and not acknowledged yet, numbered, in order: resent after a reconnect.
    unacked: tuple[NumberedToAgent, ...] = ()
    #: Encoded size of ``agent_queue`` and ``unacked`` together, bounded by ``rules.unacked_bytes``.
    unacked_size: int = 0
    #: Armed timers: name -> deadline on the session clock.
    timers: Mapping[str, float] = field(default_factory=lambda: _NO_TIMERS)
    #: The actor was told to stop (evicted or deleted); nothing follows.
    gone: bool = False
    deleted: bool = False
    #: Manager sessions (issue 11): the manager core's state, or this child's link to its manager.
    manager: ManagerState | None = None
    managed: ManagedBy | None = None

    @property
    def final(self) -> bool:
        return isinstance(self.lifecycle, Ended)


def evolve(state: SessionState, **changes: object) -> SessionState:
    """``dataclasses.replace`` without re-running ``__init__``: the core makes
    several new states per message, so this sits on the relay path."""
    new = object.__new__(SessionState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


def new_session(session_id: str, spec: SessionSpec, rules: SessionRules, now: Instant) -> SessionState:
    info = SessionInfo(
        id=session_id,
        name=spec.name,
        status=S.STARTING,
        created_at=now.wall,
        repo_url=spec.repo_url,
        branch=spec.branch,
        permission_mode=spec.permission_mode,
        model=spec.model,
    )
    manager = ManagerState(session_id) if spec.manager else None
    managed = ManagedBy(spec.managed_by) if spec.managed_by else None
    if manager is not None or managed is not None:
        info = replace_struct(info, managed_by=spec.managed_by, manager=manager and manager_info(manager))
    return SessionState(
        session_id=session_id, spec=spec, rules=rules, info=info, manager=manager, managed=managed
    )


_TURN_STATUS: Mapping[type, S] = {
    Idle: S.IDLE,
    Running: S.RUNNING,
    AwaitingApproval: S.AWAITING_APPROVAL,
    AwaitingAnswer: S.AWAITING_ANSWER,
}


def status_of(state: SessionState) -> tuple[S, str | None]:
    """The public status and its reason: the one place they are derived."""
    match state.lifecycle:
        case Ended(status=status, reason=reason):
            return status, reason
        case Starting():
            return S.STARTING, None
    if isinstance(state.link, Reconnecting):
        return S.RECONNECTING, state.link.reason
    return _TURN_STATUS[type(state.turn)], None


def pending_approval(state: SessionState) -> PendingApproval | None:
    return state.turn.approval if isinstance(state.turn, AwaitingApproval) else None


def pending_question(state: SessionState) -> PendingQuestion | None:
    return state.turn.question if isinstance(state.turn, AwaitingAnswer) else None
