"""The SessionActor: everything about one session, with one writer.

It owns the status state machine, the journal (history and numbered events),
the pending approval and question, the agent link, and all of the session's
timers. Every terminal transition goes through ``_finish``, which also
schedules eviction; ``error`` and ``terminated`` are final, so late agent
traffic cannot revive a session.

On stop every timer is cancelled (a firing already queued is recognised as
stale and dropped), the agent link is closed and token broadcasts end. On an
unhandled exception (``on_failure``) the session reports its final view, in
``error`` with the reason in its history, to the supervisor.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka
from msgspec.structs import replace

from actors.config import BerthConfig
from actors.directory import SessionBoard
from actors.events import EventBus
from actors.journal import Journal
from actors.messages import (
    ActorRef,
    AgentAttached,
    AgentDetached,
    AgentLink,
    AnswerApproval,
    AnswerQuestion,
    ChangeModel,
    ChangeSettings,
    ClaimContainer,
    Command,
    ContainerExited,
    ContainerStarted,
    ContainerStartFailed,
    Delete,
    EnsureFreshToken,
    EvictionDue,
    FromAgent,
    GetView,
    InterruptTurn,
    PoolEmpty,
    ReconnectGraceExpired,
    RemoveContainer,
    RequestModels,
    RetryToken,
    SendUserMessage,
    SessionChanged,
    SessionCrashed,
    SessionEvicted,
    SessionSpec,
    SessionView,
    StartContainer,
    StartupTimedOut,
    Subscribe,
    SubscribeTokens,
    Terminate,
    TokenAnswer,
    TokenRefreshed,
    TokenRefreshFailed,
    Unsubscribe,
    UnsubscribeTokens,
)
from actors.outcome import Rejected
from actors.secret import Secret
from actors.session_agent import AgentFrameHandler
from actors.timers import ActorTimers, TimerFired, TimerService
from transport import protocol as p
from transport.protocol import SessionStatus as S

log = logging.getLogger(__name__)

AGENT_QUEUE_LIMIT = 1000
LIVE_FOR_COMMANDS = (S.STARTING, S.IDLE, S.RUNNING, S.AWAITING_APPROVAL, S.AWAITING_ANSWER, S.RECONNECTING)


@dataclass(frozen=True)
class SessionDeps:
    config: BerthConfig
    timers: TimerService
    supervisor: ActorRef
    token: ActorRef
    container: ActorRef
    bus: EventBus
    board: SessionBoard
    pool: ActorRef | None = None


class SessionActor(pykka.ThreadingActor, AgentFrameHandler):
    def __init__(self, session_id: str, spec: SessionSpec, agent_token: Secret, deps: SessionDeps):
        super().__init__()
        self.session_id = session_id
        self._spec = spec
        self._agent_token = agent_token
        self._deps = deps
        self._config = deps.config
        self._journal = Journal(self._config.history_limit, self._config.event_log_limit, (deps.bus.publish,))
        self._info = p.SessionInfo(
            id=session_id,
            name=spec.name,
            status=S.STARTING,
            created_at=time.time(),
            repo_url=spec.repo_url,
            branch=spec.branch,
            permission_mode=spec.permission_mode,
            model=spec.model,
        )
        self._pending_approval: p.PendingApproval | None = None
        self._pending_question: p.PendingQuestion | None = None
        self._link: AgentLink | None = None
        self._agent_queue: deque[p.ServerToAgent] = deque()
        self._status_before_disconnect = S.IDLE
        self._container_requested = False
        self._container_id: str | None = None
        self._token: Secret | None = None
        self._token_attempts = 0
        self._pushed: tuple[str, Secret] | None = None
        self._timers: ActorTimers  # set in on_start, when actor_ref exists

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        self._timers = ActorTimers(self._deps.timers, self.actor_ref)
        self._timers.start("startup", self._config.startup_timeout, StartupTimedOut())
        self._deps.token.tell(SubscribeTokens(self.actor_ref))
        self._update_info()  # publishes "starting"
        self._add_message("system", f"Setting up the session container ({self._config.image})")
        self._ask_for_token()

    def on_stop(self) -> None:
        self._release("session stopped")
        self._deps.board.remove(self.session_id)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        reason = f"Session crashed: {exc_type.__name__}: {exc}"
        log.error("%s\n%s", reason, "".join(traceback.format_exception(exc_type, exc, tb)))
        self._info = replace(self._info, status=S.ERROR, status_reason=reason)
        self._add_message("error", reason)
        self._tell(self._deps.supervisor, SessionCrashed(self.session_id, self._view(), reason))
        self._release("session crashed")

    def _release(self, why: str) -> None:
        self._timers.cancel_all()
        self._close_link(4004, why)
        self._journal.clear_subscribers()
        self._tell(self._deps.token, UnsubscribeTokens(self.actor_ref))

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        match message:
            case FromAgent(link_id=link_id, frame=frame):
                if self._link is not None and link_id == self._link.link_id and not self._final:
                    self.handle_frame(frame)
            case Command(command=command, reply=reply):
                outcome = self.on_receive(command)
                try:
                    reply(outcome)
                except Exception:
                    log.exception("a command's reply failed")
            case TimerFired():
                fired = self._timers.accept(message)
                if fired is not None:
                    self.on_receive(fired)
            case AgentAttached(link=link):
                self._attach(link)
            case AgentDetached(link_id=link_id, reason=reason):
                self._detach(link_id, reason)
            case SendUserMessage(content=content):
                return self._send_user_message(content)
            case AnswerApproval():
                return self._answer_approval(message)
            case AnswerQuestion():
                return self._answer_question(message)
            case InterruptTurn():
                return self._interrupt()
            case ChangeSettings():
                return self._change_settings(message)
            case ChangeModel(model=model):
                return self._to_agent_command(p.SetModel(model=model))
            case RequestModels():
                return self._to_agent_command(p.GetModels())
            case Subscribe(sink=sink, since=since):
                self._journal.subscribe(sink, since, self._snapshot)
            case Unsubscribe(sink=sink):
                self._journal.unsubscribe(sink)
            case GetView():
                return self._view()
            case Terminate(reason=reason):
                self._terminate(reason)
            case Delete():
                self._delete()
            case TokenAnswer():
                self._token_answer(message)
            case TokenRefreshed(token=token):
                self._token = token
                self._push_token()
            case TokenRefreshFailed():
                pass
            case RetryToken():
                self._ask_for_token()
            case PoolEmpty():
                if not self._final:
                    self._start_cold()
            case ContainerStarted(container_id=cid):
                self._container_started(cid)
            case ContainerStartFailed(reason=reason):
                self._finish(S.ERROR, f"Container startup failed: {reason}")
            case ContainerExited(exit_code=code):
                self._finish(S.ERROR, f"Session container exited unexpectedly (exit code {code})")
            case StartupTimedOut():
                self._startup_timed_out()
            case ReconnectGraceExpired():
                grace = self._config.reconnect_grace
                self._finish(S.ERROR, f"Session agent did not reconnect within {grace:g} s")
            case EvictionDue():
                self._evict()
            case _:
                raise TypeError(f"SessionActor cannot handle {message!r}")
        return None

    # ------------------------------------------------------------ start-up

    def _ask_for_token(self) -> None:
        self._token_attempts += 1
        self._deps.token.tell(EnsureFreshToken(self.actor_ref))

    def _token_answer(self, answer: TokenAnswer) -> None:
        if answer.token is not None:
            self._token = answer.token
        if self._container_requested or self._final:
            self._push_token()
            return
        if answer.token is None and self._token_attempts < 2:
            delay = self._config.token_retry_delay
            self._add_message("system", f"No fresh OAuth token ({answer.reason}); retrying in {delay:g} s")
            self._timers.start("token-retry", delay, RetryToken())
            return
        if answer.token is None:
            self._add_message("system", f"Starting without an OAuth token: {answer.reason}")
        self._start_container()

    def _start_container(self) -> None:
        self._container_requested = True
        if self._deps.pool is not None:
            self._deps.pool.tell(ClaimContainer(self.session_id, self.actor_ref, self._assignment()))
            return
        self._start_cold()

    def _assignment(self) -> p.Assign:
        spec = self._spec
        return p.Assign(
            session_id=self.session_id,
            session_token=self._agent_token.reveal(),
            oauth_token=self._token.reveal() if self._token else None,
            github_token=self._config.github_token.reveal() if self._config.github_token else None,
            repo_url=spec.repo_url,
            branch=spec.branch,
            permission_mode=self._info.permission_mode,
            model=spec.model,
            runner=spec.runner,
        )

    def _start_cold(self) -> None:
        secrets = {"session-token": self._agent_token}
        if self._token is not None:
            secrets["oauth-token"] = self._token
        if self._config.github_token is not None:
            secrets["github-token"] = self._config.github_token
        env = {"BERTH_PERMISSION_MODE": self._info.permission_mode}
        for key, value in (
            ("BERTH_REPO_URL", self._spec.repo_url),
            ("BERTH_BRANCH", self._spec.branch),
            ("BERTH_MODEL", self._spec.model),
            ("BERTH_RUNNER", self._spec.runner),
        ):
            if value:
                env[key] = value
        self._deps.container.tell(StartContainer(self.session_id, self.actor_ref, secrets, env))

    def _container_started(self, container_id: str) -> None:
        self._container_id = container_id
        if self._final:
            self._deps.container.tell(RemoveContainer(self.session_id))
            return
        self._add_message("system", f"Container {container_id[:12]} started; waiting for its agent")

    def _startup_timed_out(self) -> None:
        if self._info.status is S.STARTING:
            self._finish(
                S.ERROR,
                f"Session startup timed out after {self._config.startup_timeout:g} s: the container "
                "did not start or its agent never connected",
            )

    # ------------------------------------------------------------ agent link

    def _attach(self, link: AgentLink) -> None:
        if self._final:
            link.close(4004, f"session is {self._info.status.value}")
            return
        if self._link is not None:
            self._link.close(4003, "replaced by a newer connection")
            self._add_message("system", "A new agent connection replaced the previous one")
        self._link = link
        self._timers.cancel("reconnect-grace")
        if self._info.status is S.RECONNECTING:
            self._set_status(self._status_before_disconnect)
            self._add_message("system", "Session agent reconnected")
        self._push_token()
        self._deps.token.tell(EnsureFreshToken(self.actor_ref))
        while self._agent_queue and self._link is not None:
            self._link.send(self._agent_queue.popleft())

    def _detach(self, link_id: str, reason: str) -> None:
        if self._link is None or self._link.link_id != link_id:
            return
        self._link = None
        if self._final:
            return
        if self._config.reconnect_grace > 0 and self._info.status is not S.STARTING:
            self._status_before_disconnect = self._info.status
            self._set_status(S.RECONNECTING, f"agent disconnected: {reason}")
            grace = self._config.reconnect_grace
            self._add_message("system", f"Session agent disconnected ({reason}); waiting {grace:g} s")
            self._timers.start("reconnect-grace", grace, ReconnectGraceExpired())
            return
        self._finish(S.ERROR, f"Session agent disconnected unexpectedly ({reason})")

    def _close_link(self, code: int, reason: str) -> None:
        if self._link is not None:
            self._link.close(code, reason)
            self._link = None

    def _to_agent(self, frame: p.ServerToAgent) -> None:
        if self._link is not None:
            self._link.send(frame)
        elif len(self._agent_queue) < AGENT_QUEUE_LIMIT:
            self._agent_queue.append(frame)
        else:
            raise OverflowError("the agent is unreachable and its queue is full")

    def _push_token(self) -> None:
        """Give the agent the current token, once per token per connection."""
        if self._link is None or self._token is None or self._final:
            return
        if self._pushed == (self._link.link_id, self._token):
            return
        self._pushed = (self._link.link_id, self._token)
        self._link.send(p.TokenUpdate(token=self._token.reveal()))

    # ------------------------------------------------------------ commands

    def _to_agent_command(self, frame: p.ServerToAgent) -> Rejected | None:
        if self._info.status not in LIVE_FOR_COMMANDS:
            return Rejected(f"session {self.session_id} is {self._info.status.value}", 409)
        try:
            self._to_agent(frame)
        except OverflowError as exc:
            return Rejected(str(exc), 503)
        return None

    def _send_user_message(self, content: str) -> Rejected | None:
        if not content.strip():
            return Rejected("a message needs some content", 400)
        message_id = uuid.uuid4().hex
        rejected = self._to_agent_command(p.UserMessage(content=content, id=message_id))
        if rejected is None:
            self._add_message("user", content, message_id=message_id)
        return rejected

    def _answer_approval(self, answer: AnswerApproval) -> Rejected | None:
        pending = self._pending_approval
        if pending is None or pending.id != answer.approval_id:
            return Rejected(f"no pending approval with id {answer.approval_id!r}", 409)
        frame = p.ApprovalResponse(approval_id=pending.id, allow=answer.allow, message=answer.message)
        rejected = self._to_agent_command(frame)
        if rejected is None:
            self._pending_approval = None
            self._set_status(S.RUNNING)
        return rejected

    def _answer_question(self, answer: AnswerQuestion) -> Rejected | None:
        pending = self._pending_question
        if pending is None or pending.id != answer.question_id:
            return Rejected(f"no pending question with id {answer.question_id!r}", 409)
        frame = p.QuestionResponse(question_id=pending.id, answers=dict(answer.answers))
        rejected = self._to_agent_command(frame)
        if rejected is None:
            self._pending_question = None
            self._set_status(S.RUNNING)
        return rejected

    def _interrupt(self) -> Rejected | None:
        if self._info.status not in (S.RUNNING, S.AWAITING_APPROVAL, S.AWAITING_ANSWER):
            return Rejected(f"nothing to interrupt: the session is {self._info.status.value}", 409)
        return self._to_agent_command(p.Interrupt())

    def _change_settings(self, change: ChangeSettings) -> Rejected | None:
        name = _clean_name(change.name) if change.name is not None else None
        if change.name is not None and name is None:
            return Rejected("a session name is 1-100 printable characters", 400)
        mode = change.permission_mode
        if mode is not None and mode not in p.PERMISSION_MODES:
            return Rejected(
                f"unknown permission mode {mode!r}; use one of {', '.join(p.PERMISSION_MODES)}", 400
            )
        rejected = self._to_agent_command(p.UpdateSettings(permission_mode=mode, name=name))  # type: ignore[arg-type]
        if rejected is None:
            self._update_info(
                name=name or self._info.name, permission_mode=mode or self._info.permission_mode
            )
        return rejected

    # ------------------------------------------------------------ endings

    @property
    def _final(self) -> bool:
        return self._info.status.is_final

    def _finish(self, status: S, reason: str) -> None:
        """The one way into ``error`` or ``terminated``: also schedules eviction."""
        if self._final:
            return
        self._timers.cancel_all()
        self._pending_approval = self._pending_question = None
        self._agent_queue.clear()
        self._add_message("error" if status is S.ERROR else "system", reason)
        self._set_status(status, reason)
        ttl = self._config.eviction_ttl
        self._timers.start("eviction", ttl, EvictionDue())

    def _terminate(self, reason: str) -> None:
        if self._final:
            return
        self._dismiss_agent(reason)
        self._finish(S.TERMINATED, f"Session terminated: {reason}")
        self._deps.container.tell(RemoveContainer(self.session_id))

    def _delete(self) -> None:
        self._timers.cancel_all()
        self._dismiss_agent("session deleted")
        self._deps.container.tell(RemoveContainer(self.session_id))
        if not self._final:
            self._set_status(S.TERMINATED, "deleted")
        self.stop()

    def _dismiss_agent(self, reason: str) -> None:
        """Tell the agent the session is over, then close its link for good."""
        if self._link is not None:
            self._link.send(p.Shutdown(reason=reason))
        self._close_link(1000, "shutdown")

    def _evict(self) -> None:
        self._deps.container.tell(RemoveContainer(self.session_id))
        self._tell(self._deps.supervisor, SessionEvicted(self.session_id))
        self.stop()

    # ------------------------------------------------------------ state + events

    def _set_status(self, status: S, reason: str | None = None) -> None:
        if status is self._info.status and reason is None:
            return
        self._update_info(status=status, status_reason=reason)

    def _update_info(self, **changes: Any) -> None:
        ended = not self._final and changes.get("status", self._info.status).is_final
        self._info = replace(self._info, **changes)
        info = self._info
        self._journal.publish(lambda seq: p.SessionUpdate(session_id=self.session_id, seq=seq, session=info))
        self._deps.board.post(info)
        if ended:
            self._tell(self._deps.supervisor, SessionChanged(info))

    def _add_message(
        self, kind: p.MessageKind, content: str, message_id: str | None = None, **extra: Any
    ) -> None:
        message = p.ChatMessage(
            id=message_id or uuid.uuid4().hex, kind=kind, content=content, timestamp=time.time(), **extra
        )
        self._record(message)

    def _record(self, message: p.ChatMessage) -> None:
        self._journal.history.append(message)
        preview = message.content if len(message.content) <= 100 else message.content[:100] + "…"
        self._info = replace(self._info, last_message_at=message.timestamp, last_message_preview=preview)
        self._journal.publish(
            lambda seq: p.MessageAdded(session_id=self.session_id, seq=seq, message=message)
        )

    def _view(self) -> SessionView:
        return SessionView(
            info=self._info,
            history=tuple(self._journal.history),
            pending_approval=self._pending_approval,
            pending_question=self._pending_question,
            seq=self._journal.seq,
            timers=self._timers.armed(),
            agent_connected=self._link is not None,
        )

    def _snapshot(self) -> p.Snapshot:
        return p.Snapshot(
            session_id=self.session_id,
            seq=self._journal.seq,
            session=self._info,
            history=list(self._journal.history),
            pending_approval=self._pending_approval,
            pending_question=self._pending_question,
        )

    @staticmethod
    def _tell(ref: ActorRef, message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            log.debug("dropped %r: recipient stopped", type(message).__name__)


def _clean_name(name: str) -> str | None:
    cleaned = "".join(ch for ch in name if ch.isprintable()).strip()
    return cleaned if 1 <= len(cleaned) <= 100 else None
