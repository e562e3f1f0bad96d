"""Every frame exchanged between agents, clients and the server.

Frames are JSON text objects tagged by ``type`` with camelCase keys. Each kind
is a frozen ``msgspec.Struct`` so that decoding and validation happen in one
pass (msgspec is several times faster than hand-written checks, which matters
on the token relay path). The records shared by both sides (chat messages,
pending approvals and questions, session info) live here too, because they
are what crosses the wire and what the session actor hands out as snapshots.

``docs/protocol.md`` documents this module for third parties.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from transport.limits import bounded_message

#: A cost in USD: never negative, never infinite (JSON has no NaN; a huge
#: exponent is refused as out of range).
Cost = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
#: A token, turn or millisecond count.
Count = Annotated[int, msgspec.Meta(ge=0)]


class SessionStatus(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_ANSWER = "awaiting_answer"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    TERMINATED = "terminated"

    @property
    def is_final(self) -> bool:
        return self in (SessionStatus.ERROR, SessionStatus.TERMINATED)


PermissionMode = Literal["normal", "auto_edits", "dangerous", "plan"]
PERMISSION_MODES: tuple[str, ...] = ("normal", "auto_edits", "dangerous", "plan")
#: The runners a session image carries (``agent.config.RunnerKind``).
RUNNERS: tuple[str, ...] = ("builtin", "sdk")

MessageKind = Literal["user", "assistant", "tool_call", "tool_result", "system", "error"]


class _Record(msgspec.Struct, frozen=True, rename="camel", kw_only=True, omit_defaults=True):
    """Base for records embedded in frames."""


class ChatMessage(_Record, frozen=True):
    """One entry of a session's history."""

    id: str
    kind: MessageKind
    content: str
    timestamp: float
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    is_error: bool = False


class ContextUsage(_Record, frozen=True):
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_tokens: Count = 0
    cache_creation_tokens: Count = 0
    context_window: Count | None = None
    num_turns: Count = 0
    duration_ms: Count = 0


class PendingApproval(_Record, frozen=True):
    id: str
    tool_name: str
    tool_input: dict[str, Any]
    timestamp: float
    reason: str | None = None


class QuestionOption(_Record, frozen=True):
    label: str
    description: str = ""


class QuestionItem(_Record, frozen=True):
    question: str
    header: str = ""
    options: list[QuestionOption] = []
    multi_select: bool = False


class PendingQuestion(_Record, frozen=True):
    id: str
    questions: list[QuestionItem]
    timestamp: float


class ModelInfo(_Record, frozen=True):
    value: str
    display_name: str = ""
    description: str = ""


class ChildSummary(_Record, frozen=True):
    """One child of a manager session, as its manager's info lists it."""

    id: str
    name: str
    status: SessionStatus


class ManagerInfo(_Record, frozen=True, omit_defaults=False):
    """What a manager session is doing: its live children and its current step (all keys always sent)."""

    children: list[ChildSummary] = []
    step: str = "idle"
    paused: bool = False
    #: Unix time of the scheduled automatic resume, if any.
    resume_at: float | None = None
    #: Events for the manager waiting to be delivered (queued while it is busy or paused).
    pending_events: int = 0
    configured: bool = False


class SessionInfo(_Record, frozen=True):
    """What a client sees of a session (never a secret)."""

    id: str
    name: str
    status: SessionStatus
    created_at: float
    repo_url: str | None = None
    branch: str | None = None
    # Always encoded (a factory default is never omitted): clients read the mode in force.
    permission_mode: str = msgspec.field(default_factory=lambda: "normal")
    model: str | None = None
    total_cost_usd: float = 0.0
    context_usage: ContextUsage | None = None
    last_message_at: float | None = None
    last_message_preview: str | None = None
    status_reason: str | None = None
    #: The id of the manager session that created this one.
    managed_by: str | None = None
    #: Set for manager sessions only.
    manager: ManagerInfo | None = None


# --------------------------------------------------------------------------
# Agent -> server


class _Frame(msgspec.Struct, frozen=True, rename="camel", kw_only=True, tag_field="type"):
    """Base for frames; the subclass ``tag`` is the wire ``type``."""


class _AgentFrame(_Frame, frozen=True, kw_only=True):
    """Base for agent frames. ``n`` numbers them on the agent link (1, 2, …; 0 = not
    numbered): the server acknowledges them (``link_ack``) once what they did is
    stored, and a reconnecting agent resends what was not acknowledged."""

    n: int = 0


class Ready(_AgentFrame, tag="ready", frozen=True):
    pass


class SetupProgress(_AgentFrame, tag="setup_progress", frozen=True):
    message: str


class SdkMessage(_AgentFrame, tag="sdk_message", frozen=True):
    message: ChatMessage


class Stream(_AgentFrame, tag="stream", frozen=True):
    """One or more consecutive tokens of the streamed message ``message_id``."""

    message_id: str
    tokens: list[str]


class ApprovalRequest(_AgentFrame, tag="approval_request", frozen=True):
    approval: PendingApproval


class Question(_AgentFrame, tag="question", frozen=True):
    question: PendingQuestion


class Result(_AgentFrame, tag="result", frozen=True):
    result: str | None = None
    cost_usd: Cost = 0.0
    is_error: bool = False
    context_usage: ContextUsage | None = None


AgentStatus = Literal["running", "idle", "awaiting_approval", "awaiting_answer"]


class StatusUpdate(_AgentFrame, tag="status_update", frozen=True):
    status: AgentStatus


class SessionInfoUpdate(_AgentFrame, tag="session_info_update", frozen=True):
    model: str | None = None
    permission_mode: PermissionMode | None = None
    total_cost_usd: Cost | None = None
    context_usage: ContextUsage | None = None


class ModelsList(_AgentFrame, tag="models_list", frozen=True):
    models: list[ModelInfo]


class ApiRetry(_AgentFrame, tag="api_retry", frozen=True):
    """Claude Code's request to the Messages API failed and will be retried.

    ``retry_at`` is when (Unix s) the next attempt goes out; ``reason`` is the
    CLI's own (e.g. ``rate_limit``, ``server_error``, or a connection error).
    """

    attempt: int
    max_retries: int
    retry_at: float
    reason: str
    error_status: int | None = None


class RateLimit(_AgentFrame, tag="rate_limit", frozen=True):
    """The account's rate-limit state changed (``allowed_warning``, ``rejected``, ``allowed``)."""

    status: str
    resets_at: float | None = None
    limit_type: str | None = None


class AgentError(_AgentFrame, tag="error", frozen=True):
    """An error the agent reports; ``fatal`` means its runner is gone."""

    message: str
    fatal: bool = False


class AgentLinkAck(_AgentFrame, tag="link_ack", frozen=True):
    """Every numbered server frame up to ``received`` reached the agent. Not numbered
    itself (``n`` stays 0): a lost one is superseded by the next, or by the
    ``X-Berth-Received`` header of the agent's next connection."""

    received: int


AgentToServer = (
    Ready
    | SetupProgress
    | SdkMessage
    | Stream
    | ApprovalRequest
    | Question
    | Result
    | StatusUpdate
    | SessionInfoUpdate
    | ModelsList
    | ApiRetry
    | RateLimit
    | AgentError
    | AgentLinkAck
)


class ProtocolError(_Frame, tag="protocol_error", frozen=True):
    """The server could not use a frame a peer sent; the connection stays up."""

    message: str
    session_id: str | None = None
    request_id: str | None = None


# --------------------------------------------------------------------------
# Server -> agent


class _NumberedFrame(_Frame, frozen=True, kw_only=True):
    """Base for the server's data frames to an agent. ``n`` numbers them on the
    link (1, 2, …, per session; 0 = not numbered): the agent acknowledges them
    (``link_ack``), the server resends what was not acknowledged after a
    reconnect, and the agent drops a number it already has."""

    n: int = 0


class UserMessage(_NumberedFrame, tag="user_message", frozen=True):
    content: str
    id: str = ""


class ApprovalResponse(_NumberedFrame, tag="approval_response", frozen=True):
    approval_id: str
    allow: bool
    message: str | None = None


class QuestionResponse(_NumberedFrame, tag="question_response", frozen=True):
    question_id: str
    answers: dict[str, str]


class Interrupt(_NumberedFrame, tag="interrupt", frozen=True):
    pass


class UpdateSettings(_NumberedFrame, tag="update_settings", frozen=True):
    permission_mode: PermissionMode | None = None
    name: str | None = None


class SetModel(_NumberedFrame, tag="set_model", frozen=True):
    model: str | None


class GetModels(_NumberedFrame, tag="get_models", frozen=True):
    pass


class TokenUpdate(_Frame, tag="token_update", frozen=True):
    """Carries a secret: never log or echo this frame."""

    token: str

    def __repr__(self) -> str:
        return "TokenUpdate(token=<redacted>)"


class Assign(_Frame, tag="assign", frozen=True):
    """Hands a pooled (pre-started) agent its session; carries secrets, never log it.

    The agent then reconnects as that session's agent (``/agent/<sessionId>``
    with ``sessionToken``) and says ``ready``.
    """

    session_id: str
    session_token: str
    oauth_token: str | None = None
    github_token: str | None = None
    repo_url: str | None = None
    branch: str | None = None
    permission_mode: str = "normal"
    model: str | None = None
    runner: str | None = None

    def __repr__(self) -> str:
        return f"Assign(session_id={self.session_id!r}, <secrets redacted>)"


class LinkResume(_Frame, tag="link_resume", frozen=True):
    """First frame on every agent connection: the highest ``n`` the server has of
    this agent. The agent drops what it holds up to it and resends the rest, in
    order, before anything new."""

    received: int


class LinkAck(_Frame, tag="link_ack", frozen=True):
    """Every agent frame up to ``received`` is processed and stored."""

    received: int


class Shutdown(_NumberedFrame, tag="shutdown", frozen=True):
    """The session is over: the agent closes its runner and exits."""

    reason: str = ""


#: The server's frames an agent acknowledges; every other one travels unnumbered.
NumberedToAgent = (
    UserMessage
    | ApprovalResponse
    | QuestionResponse
    | Interrupt
    | UpdateSettings
    | SetModel
    | GetModels
    | Shutdown
)

ServerToAgent = LinkResume | LinkAck | NumberedToAgent | TokenUpdate | Assign | ProtocolError

# --------------------------------------------------------------------------
# Server -> client events. Each carries its session's sequence number: a
# client that reconnects subscribes "since" the last one it saw.


class SessionUpdate(_Frame, tag="session_update", frozen=True):
    session_id: str
    seq: int
    session: SessionInfo


class MessageAdded(_Frame, tag="message", frozen=True):
    session_id: str
    seq: int
    message: ChatMessage


class StreamTokens(_Frame, tag="stream", frozen=True):
    session_id: str
    seq: int
    message_id: str
    tokens: list[str]


class ApprovalRequested(_Frame, tag="approval_request", frozen=True):
    session_id: str
    seq: int
    approval: PendingApproval


class QuestionAsked(_Frame, tag="question", frozen=True):
    session_id: str
    seq: int
    question: PendingQuestion


class TurnResult(_Frame, tag="result", frozen=True):
    session_id: str
    seq: int
    result: str | None = None
    cost_usd: float = 0.0
    is_error: bool = False
    context_usage: ContextUsage | None = None


class ModelsAvailable(_Frame, tag="models_list", frozen=True):
    session_id: str
    seq: int
    models: list[ModelInfo]


class ApiRetrying(_Frame, tag="api_retry", frozen=True):
    """The session's Claude Code is retrying a failed API request (no status change)."""

    session_id: str
    seq: int
    attempt: int
    max_retries: int
    retry_at: float
    reason: str
    error_status: int | None = None


class RateLimited(_Frame, tag="rate_limit", frozen=True):
    session_id: str
    seq: int
    status: str
    resets_at: float | None = None
    limit_type: str | None = None


SessionEvent = (
    SessionUpdate
    | MessageAdded
    | StreamTokens
    | ApprovalRequested
    | QuestionAsked
    | TurnResult
    | ModelsAvailable
    | ApiRetrying
    | RateLimited
)


class Snapshot(_Frame, tag="snapshot", frozen=True):
    """First frame after subscribe: everything up to and including ``seq``."""

    session_id: str
    seq: int
    session: SessionInfo
    history: list[ChatMessage]
    pending_approval: PendingApproval | None = None
    pending_question: PendingQuestion | None = None


class AuthAlert(_Frame, tag="auth_alert", frozen=True):
    """The OAuth token was refreshed, or refreshing it failed (re-authenticate)."""

    status: Literal["refreshed", "refresh_failed"]
    message: str


class Ack(_Frame, tag="ack", frozen=True):
    """A client command was accepted."""

    request_id: str | None = None
    session_id: str | None = None


# --------------------------------------------------------------------------
# Client -> server. ``requestId`` is echoed in the ``ack`` or ``protocol_error``.


class ClientSubscribe(_Frame, tag="subscribe", frozen=True):
    session_id: str
    since: int | None = None
    request_id: str | None = None


class ClientUnsubscribe(_Frame, tag="unsubscribe", frozen=True):
    session_id: str
    request_id: str | None = None


class SendPrompt(_Frame, tag="send_prompt", frozen=True):
    session_id: str
    content: str
    request_id: str | None = None


class ApproveTool(_Frame, tag="approve_tool", frozen=True):
    session_id: str
    approval_id: str
    allow: bool
    message: str | None = None
    request_id: str | None = None


class AnswerQuestionFrame(_Frame, tag="answer_question", frozen=True):
    session_id: str
    question_id: str
    answers: dict[str, str]
    request_id: str | None = None


class InterruptSession(_Frame, tag="interrupt", frozen=True):
    session_id: str
    request_id: str | None = None


class UpdateSessionSettings(_Frame, tag="update_settings", frozen=True):
    session_id: str
    name: str | None = None
    permission_mode: str | None = None
    request_id: str | None = None


class SetSessionModel(_Frame, tag="set_model", frozen=True):
    session_id: str
    model: str | None
    request_id: str | None = None


class GetSessionModels(_Frame, tag="get_models", frozen=True):
    session_id: str
    request_id: str | None = None


class CreateSessionFrame(_Frame, tag="create_session", frozen=True):
    """Create a session (``manager``: a manager session); the ``ack`` carries its ``sessionId``."""

    name: str = "session"
    repo_url: str | None = None
    branch: str | None = None
    permission_mode: str = "normal"
    model: str | None = None
    runner: str | None = None
    manager: bool = False
    request_id: str | None = None


#: Client frames about one session (they carry its ``sessionId``).
SessionFrame = (
    ClientSubscribe
    | ClientUnsubscribe
    | SendPrompt
    | ApproveTool
    | AnswerQuestionFrame
    | InterruptSession
    | UpdateSessionSettings
    | SetSessionModel
    | GetSessionModels
)
ClientToServer = SessionFrame | CreateSessionFrame


# --------------------------------------------------------------------------
# Encoding and decoding

_encoder = msgspec.json.Encoder()
_agent_decoder = msgspec.json.Decoder(AgentToServer)
_server_decoder = msgspec.json.Decoder(ServerToAgent)
_client_decoder = msgspec.json.Decoder(ClientToServer)


class FrameError(ValueError):
    """A frame that is not valid JSON or does not match any frame schema."""


def encode(frame: msgspec.Struct) -> str:
    return _encoder.encode(frame).decode()


def encode_bytes(frame: msgspec.Struct) -> bytes:
    return _encoder.encode(frame)


def _decode(decoder: msgspec.json.Decoder[Any], data: str | bytes) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:  # it may quote the value: cut a huge one short
        raise FrameError(bounded_message(f"invalid frame: {exc}")) from None
    except msgspec.DecodeError as exc:
        raise FrameError(bounded_message(f"frame is not valid JSON: {exc}")) from None


def decode_agent_frame(data: str | bytes) -> AgentToServer:
    """Parse a frame an agent sent; raises FrameError naming the problem."""
    result: AgentToServer = _decode(_agent_decoder, data)
    return result


def decode_server_frame(data: str | bytes) -> ServerToAgent:
    """Parse a frame the server sent to an agent; raises FrameError."""
    result: ServerToAgent = _decode(_server_decoder, data)
    return result


def decode_client_frame(data: str | bytes) -> ClientToServer:
    """Parse a frame a client sent; raises FrameError."""
    result: ClientToServer = _decode(_client_decoder, data)
    return result
