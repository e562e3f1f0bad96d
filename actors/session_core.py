"""Every rule of a session, as one pure function: ``step(state, message, now)``.

``step`` returns the next ``SessionState`` and the effects (values from
``actors.effects``) the SessionActor must carry out, in order. It reads no
clock, draws no random number and touches no socket, so the property tests
run it many thousands of times without threads.

Every way into a final state — error, terminate, delete, crash — goes
through ``_Step.end``, which cancels every timer and either arms eviction or
performs it at once. A timer firing whose timer is no longer armed in the
state is ignored, so nothing fires after a delete or a cancel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from msgspec.structs import replace as replace_struct

from actors import effects as fx
from actors import link_outbound as outbound
from actors import messages as m
from actors import session_roles as roles
from actors.manager_events import ManagerGone
from actors.outcome import Rejected
from actors.session_frames import apply_frame
from actors.session_state import (
    AwaitingAnswer,
    AwaitingApproval,
    Connected,
    ContainerPhase,
    Ended,
    Idle,
    Instant,
    Live,
    NoAgent,
    Reconnecting,
    Running,
    SessionState,
    Starting,
    evolve,
    status_of,
)
from transport import protocol as p
from transport.protocol import SessionStatus as S

#: Which timer delivers which message (a firing is checked against the state).
TIMER_OF: dict[type, str] = {
    m.StartupTimedOut: "startup",
    m.RetryToken: "token-retry",
    m.ReconnectGraceExpired: "reconnect-grace",
    m.EvictionDue: "eviction",
}


def start(state: SessionState, now: Instant) -> tuple[SessionState, tuple[fx.Effect, ...]]:
    """The effects of a new session: its startup timer, then token or container."""
    s = _Step(state, now)
    s.arm("startup", state.rules.startup_timeout, m.StartupTimedOut())
    s.publish_info(force=True)
    roles.started(s)  # a managed child tells its manager (issue 11)
    s.note("system", f"Setting up the session container ({state.rules.image})")
    if state.rules.needs_token:
        s.ask_for_token()
    else:
        s.launch()
    return s.done()


#: The message each timer delivers (the inverse of TIMER_OF), for re-arming after a restart.
MESSAGE_OF: dict[str, Any] = {
    "startup": m.StartupTimedOut(),
    "token-retry": m.RetryToken(),
    "reconnect-grace": m.ReconnectGraceExpired(),
    "eviction": m.EvictionDue(),
}


def resume(
    state: SessionState, now: Instant, deadlines: Mapping[str, float]
) -> tuple[SessionState, tuple[fx.Effect, ...]]:
    """A session loaded from the store after a restart (issue 9: ``actors.recovery``).

    Its timers, a manager's among them, are re-armed at ``deadlines`` (this
    clock's time; a deadline already passed fires at once). A live session
    whose agent was connected waits for it to reconnect, within the grace
    period.
    """
    s = _Step(replace(state, timers=MappingProxyType({}), token=None, pushed=None), now)
    for name, deadline in deadlines.items():
        message = MESSAGE_OF.get(name) or roles.timer_message(name)  # a manager's timers too (issue 11)
        if message is not None:
            s.arm(name, max(0.0, deadline - now.mono), message)
    if not s.s.final and not isinstance(s.s.lifecycle, Starting):
        grace = s.s.rules.reconnect_grace
        s.disarm("reconnect-grace")
        s.set(link=Reconnecting(now.mono + grace, "Berth restarted; waiting for the agent to reconnect"))
        s.note("system", f"Berth restarted; waiting {grace:g} s for the session agent to reconnect")
        s.arm("reconnect-grace", grace, m.ReconnectGraceExpired())
    elif not s.s.final:
        s.set(link=NoAgent())
    outbound.restarted(s)
    if not s.s.final and s.s.rules.needs_token:
        s.ask_for_token()
    s.publish_info(force=True)
    s.emit(fx.Persist())
    return s.done()


def step(state: SessionState, message: Any, now: Instant) -> tuple[SessionState, tuple[fx.Effect, ...]]:
    s = _Step(state, now)
    if state.gone:
        if _is_command(message):
            s.reply(Rejected(f"session {state.session_id} has ended", 409))
        return s.done()
    timer = TIMER_OF.get(type(message))
    if timer is not None and not s.fired(timer):
        return s.done()
    s.dispatch(message)
    return s.done()


_COMMANDS = (
    m.SendUserMessage,
    m.AnswerApproval,
    m.AnswerQuestion,
    m.InterruptTurn,
    m.ChangeSettings,
    m.ChangeModel,
    m.RequestModels,
    m.Terminate,
    m.Delete,
    *roles.MANAGER_COMMANDS,
)


def _is_command(message: Any) -> bool:
    return isinstance(message, _COMMANDS)


class _Step:
    """One transition under construction: the new state and its effects."""

    def __init__(self, state: SessionState, now: Instant) -> None:
        self.s = state
        self.now = now
        self.effects: list[fx.Effect] = []
        self._before = state
        self._posted = self._published = state.info

    def done(self) -> tuple[SessionState, tuple[fx.Effect, ...]]:
        self.publish_info()
        roles.status_changed(self, self._before.info)  # issue 11
        if _durable(self.s) != _durable(self._before):
            self.emit(fx.Persist())
        return self.s, tuple(self.effects)

    def set(self, **changes: Any) -> None:
        self.s = evolve(self.s, **changes)

    def emit(self, effect: fx.Effect) -> None:
        self.effects.append(effect)

    def reply(self, outcome: Rejected | None) -> None:
        self.emit(fx.Reply(outcome))

    # ------------------------------------------------------------ dispatch

    def dispatch(self, message: Any) -> None:
        match message:
            case m.AgentConnected(link_id=link_id, received=received):
                self.attach(link_id, received)
            case m.AgentDetached(link_id=link_id, reason=reason):
                self.detach(link_id, reason)
            case m.FromAgent(link_id=link_id, frame=p.AgentLinkAck(received=received)):
                if self.s.link == Connected(link_id):
                    outbound.acked(self, received)
            case m.FromAgent(link_id=link_id, frame=frame):
                if self.s.link == Connected(link_id) and not self.s.final:
                    was_live = isinstance(self.s.lifecycle, Live)
                    apply_frame(self, frame)
                    if not self.s.final:
                        roles.after_frame(self, frame, was_live)  # issue 11
            case m.SendUserMessage(content=content):
                self.reply(self.user_message(content))
            case m.AnswerApproval():
                self.reply(self.answer_approval(message))
            case m.AnswerQuestion():
                self.reply(self.answer_question(message))
            case m.InterruptTurn():
                self.reply(self.interrupt())
            case m.ChangeSettings():
                self.reply(self.change_settings(message))
            case m.ChangeModel(model=model):
                self.reply(self.command(p.SetModel(model=model)))
            case m.RequestModels():
                self.reply(self.command(p.GetModels()))
            case m.Terminate(reason=reason):
                self.terminate(reason)
                self.reply(None)
            case m.Delete():
                self.delete()
                self.reply(None)
            case m.TokenAnswer():
                self.token_answer(message)
            case m.TokenRefreshed(token=token):
                self.set(token=token)
                self.push_token()
            case m.TokenRefreshFailed():
                pass
            case m.TokenServiceRestarted():
                if self.s.container == ContainerPhase.NONE and "token-retry" not in self.s.timers:
                    self.ask_for_token()
            case m.RetryToken():
                self.ask_for_token()
            case m.PoolEmpty():
                if not self.s.final and self.s.container == ContainerPhase.REQUESTED:
                    self.emit(fx.LaunchContainer(self.container_env(), from_pool=False))
            case m.ContainerStarted(container_id=cid):
                self.container_started(cid)
            case m.ContainerStartFailed(reason=reason):
                self.end(S.ERROR, f"Container startup failed: {reason}")
            case m.ContainerExited(exit_code=code, why=why):
                said = f". Its last words: {why}" if why else ""
                self.end(S.ERROR, f"Session container exited unexpectedly (exit code {code}){said}")
            case m.ContainerLost(reason=reason):
                self.end(S.ERROR, reason)
            case m.StartupTimedOut():
                if isinstance(self.s.lifecycle, Starting):
                    self.end(
                        S.ERROR,
                        f"Session startup timed out after {self.s.rules.startup_timeout:g} s: the "
                        "container did not start or its agent never connected",
                    )
            case m.ReconnectGraceExpired():
                if isinstance(self.s.link, Reconnecting):
                    grace = self.s.rules.reconnect_grace
                    self.end(S.ERROR, f"Session agent did not reconnect within {grace:g} s")
            case m.EvictionDue():
                self.evict(evicted=True)
            case m.SessionFailed(reason=reason):
                self.end(S.ERROR, f"Session crashed: {reason}")
            case ManagerGone():
                roles.orphaned(self, message)
            case _ if isinstance(message, roles.MANAGER_INPUTS):  # manager sessions (issue 11)
                outcome = roles.manager_input(self, message)
                if isinstance(message, roles.MANAGER_COMMANDS):
                    self.reply(outcome)
            case _:
                raise TypeError(f"a session cannot handle {message!r}")

    # ------------------------------------------------------------ records

    def next_id(self) -> str:
        self.set(ids=self.s.ids + 1)
        return f"{self.s.session_id[:12]}-{self.s.ids}"

    def publish(self, make: Any) -> None:
        """Number an event (``make(seq)``) and hand it to the journal."""
        self.set(seq=self.s.seq + 1)
        self.emit(fx.Publish(make(self.s.seq)))

    def record(self, message: p.ChatMessage) -> None:
        content = message.content
        preview = content if len(content) <= 100 else content[:100] + "…"
        self.info(last_message_at=message.timestamp, last_message_preview=preview)
        self.emit(fx.RecordMessage(message))
        sid = self.s.session_id
        self.publish(lambda seq: p.MessageAdded(session_id=sid, seq=seq, message=message))

    def note(self, kind: p.MessageKind, content: str, message_id: str | None = None) -> None:
        message_id = message_id or self.next_id()
        self.record(p.ChatMessage(id=message_id, kind=kind, content=content, timestamp=self.now.wall))

    def info(self, **changes: Any) -> None:
        self.set(info=replace_struct(self.s.info, **changes))

    def publish_info(self, force: bool = False) -> None:
        """Publish the info when a client-visible part of it (or the status) changed."""
        status, reason = status_of(self.s)
        if status is not self.s.info.status or reason != self.s.info.status_reason:
            self.info(status=status, status_reason=reason)
        info = self.s.info
        if info == self._posted and not force:
            return
        self._posted = info
        self.emit(fx.PostInfo(info))
        if force or _visible(info) != _visible(self._published):
            self._published = info
            sid = self.s.session_id
            self.publish(lambda seq: p.SessionUpdate(session_id=sid, seq=seq, session=info))

    # ------------------------------------------------------------ timers

    def arm(self, name: str, delay: float, message: Any) -> None:
        self.set(timers=MappingProxyType({**self.s.timers, name: self.now.mono + delay}))
        self.emit(fx.StartTimer(name, delay, message))

    def disarm(self, name: str) -> None:
        if name in self.s.timers:
            self.fired(name)
            self.emit(fx.CancelTimer(name))

    def fired(self, name: str) -> bool:
        """Forget timer ``name``; False when it was not armed (a stale firing)."""
        if name not in self.s.timers:
            return False
        self.set(timers=MappingProxyType({k: v for k, v in self.s.timers.items() if k != name}))
        return True

    # ------------------------------------------------------------ token + container

    def ask_for_token(self) -> None:
        self.set(token_attempts=self.s.token_attempts + 1)
        self.emit(fx.RequestToken())

    def token_answer(self, answer: m.TokenAnswer) -> None:
        if answer.token is not None:
            self.set(token=answer.token)
        if self.s.container != ContainerPhase.NONE or self.s.final:
            self.push_token()
            return
        if answer.token is None and self.s.token_attempts < 2:
            delay = self.s.rules.token_retry_delay
            self.note("system", f"No fresh OAuth token ({answer.reason}); retrying in {delay:g} s")
            self.arm("token-retry", delay, m.RetryToken())
            return
        if answer.token is None:
            self.note("system", f"Starting without an OAuth token: {answer.reason}")
        self.launch()

    def launch(self) -> None:
        self.set(container=ContainerPhase.REQUESTED)
        self.emit(fx.LaunchContainer(self.container_env(), from_pool=self.s.rules.use_pool))

    def container_env(self) -> dict[str, str]:
        spec = self.s.spec
        env = {"BERTH_PERMISSION_MODE": self.s.info.permission_mode}
        for key, value in (
            ("BERTH_REPO_URL", spec.repo_url),
            ("BERTH_BRANCH", spec.branch),
            ("BERTH_MODEL", spec.model),
            ("BERTH_RUNNER", spec.runner),
        ):
            if value:
                env[key] = value
        roles.container_env(self, env)
        return env

    def container_started(self, container_id: str) -> None:
        self.set(container=ContainerPhase.RUNNING, container_id=container_id)
        if self.s.final:
            self.remove_container()
            return
        self.note("system", f"Container {container_id[:12]} started; waiting for its agent")

    def remove_container(self) -> None:
        if self.s.container in (ContainerPhase.REQUESTED, ContainerPhase.RUNNING):
            self.set(container=ContainerPhase.REMOVED)
            self.emit(fx.RemoveContainer())

    def push_token(self) -> None:
        """Give the agent the current token, once per token per connection."""
        link, token = self.s.link, self.s.token
        if not isinstance(link, Connected) or token is None or self.s.final:
            return
        if self.s.pushed == (link.link_id, token):
            return
        self.set(pushed=(link.link_id, token))
        self.emit(fx.PushToken(link.link_id))

    # ------------------------------------------------------------ agent link

    def attach(self, link_id: str, received: int = 0) -> None:
        if self.s.final:
            self.emit(fx.CloseAgentLink(link_id, 4004, f"session is {self.s.info.status.value}"))
            return
        previous = self.s.link
        if isinstance(previous, Connected):
            self.emit(fx.CloseAgentLink(previous.link_id, 4003, "replaced by a newer connection"))
            self.note("system", "A new agent connection replaced the previous one")
        self.set(link=Connected(link_id))
        self.disarm("reconnect-grace")
        if isinstance(previous, Reconnecting):
            self.note("system", "Session agent reconnected")
        outbound.resend(self, link_id, received)  # what the agent missed, before anything new
        self.push_token()
        if self.s.rules.needs_token:
            self.emit(fx.RequestToken())
        if isinstance(self.s.lifecycle, Live):
            self.flush_queue()

    def flush_queue(self) -> None:
        """Hand the held frames to the agent, in order (only once it said ``ready``)."""
        if isinstance(self.s.link, Connected):
            outbound.send_held(self, self.s.link.link_id)

    def detach(self, link_id: str, reason: str) -> None:
        if self.s.link != Connected(link_id):
            return
        self.set(link=NoAgent())
        if self.s.final:
            return
        if isinstance(self.s.lifecycle, Starting):
            self.note("system", f"Session agent disconnected during start-up ({reason})")
            return
        grace = self.s.rules.reconnect_grace
        if grace <= 0:
            self.end(S.ERROR, f"Session agent disconnected unexpectedly ({reason})")
            return
        self.set(link=Reconnecting(self.now.mono + grace, f"agent disconnected: {reason}"))
        self.note("system", f"Session agent disconnected ({reason}); waiting {grace:g} s")
        self.arm("reconnect-grace", grace, m.ReconnectGraceExpired())

    def to_agent(self, frame: p.ServerToAgent) -> Rejected | None:
        """Send now to a ready agent; hold for one that is away or still starting.
        Either way it is kept until the agent acknowledges it (``actors.link_outbound``)."""
        size = outbound.size_of(frame)
        refused = outbound.refusal(self, frame, size)
        if refused is not None:
            return refused
        if isinstance(self.s.link, Connected) and isinstance(self.s.lifecycle, Live):
            outbound.send(self, self.s.link.link_id, frame, size)
        else:
            outbound.hold(self, frame, size)
        return None

    # ------------------------------------------------------------ commands

    def command(self, frame: p.ServerToAgent) -> Rejected | None:
        if self.s.final:
            return Rejected(f"session {self.s.session_id} is {self.s.info.status.value}", 409)
        return self.to_agent(frame)

    def user_message(self, content: str) -> Rejected | None:
        if not content.strip():
            return Rejected("a message needs some content", 400)
        if len(content) > self.s.rules.prompt_chars:
            limit = self.s.rules.prompt_chars
            return Rejected(f"the message is {len(content)} characters; the limit is {limit}", 400)
        onboarding = roles.onboarding_pending(self)  # issue 11
        if onboarding is not None:
            return onboarding
        message_id = self.next_id()
        rejected = self.command(p.UserMessage(content=content, id=message_id))
        if rejected is None:
            self.note("user", content, message_id=message_id)
            roles.user_message(self)
        return rejected

    def answer_approval(self, answer: m.AnswerApproval) -> Rejected | None:
        turn = self.s.turn
        if not isinstance(turn, AwaitingApproval) or turn.approval.id != answer.approval_id:
            return Rejected(f"no pending approval with id {answer.approval_id!r}", 409)
        frame = p.ApprovalResponse(approval_id=answer.approval_id, allow=answer.allow, message=answer.message)
        rejected = self.command(frame)
        if rejected is None:
            self.set(turn=Running())
        return rejected

    def answer_question(self, answer: m.AnswerQuestion) -> Rejected | None:
        if roles.is_onboarding(self, answer.question_id):
            return roles.onboarding_answer(self, answer.question_id, dict(answer.answers))
        turn = self.s.turn
        if not isinstance(turn, AwaitingAnswer) or turn.question.id != answer.question_id:
            return Rejected(f"no pending question with id {answer.question_id!r}", 409)
        rejected = self.command(
            p.QuestionResponse(question_id=answer.question_id, answers=dict(answer.answers))
        )
        if rejected is None:
            self.set(turn=Running())
        return rejected

    def interrupt(self) -> Rejected | None:
        if roles.interrupted(self):
            return None  # an idle manager: the interrupt cancelled its pending nudge
        if self.s.final or isinstance(self.s.turn, Idle):
            return Rejected(f"nothing to interrupt: the session is {self.s.info.status.value}", 409)
        return self.command(p.Interrupt())

    def change_settings(self, change: m.ChangeSettings) -> Rejected | None:
        name = clean_name(change.name) if change.name is not None else None
        if change.name is not None and name is None:
            return Rejected("a session name is 1-100 printable characters", 400)
        mode = change.permission_mode
        if mode is not None and mode not in p.PERMISSION_MODES:
            return Rejected(
                f"unknown permission mode {mode!r}; use one of {', '.join(p.PERMISSION_MODES)}", 400
            )
        rejected = self.command(p.UpdateSettings(permission_mode=mode, name=name))  # type: ignore[arg-type]
        if rejected is None:
            self.info(name=name or self.s.info.name, permission_mode=mode or self.s.info.permission_mode)
        return rejected

    # ------------------------------------------------------------ endings

    def end(self, status: S, reason: str, evict_now: bool = False) -> None:
        """The one way into ``error`` or ``terminated``; eviction is armed or done."""
        if self.s.final:
            return
        roles.ended(self)  # a manager's children are ended with it (issue 11)
        for name in list(self.s.timers):
            self.disarm(name)
        if isinstance(self.s.link, Connected):
            code = 1000 if status is S.TERMINATED else 4004
            self.emit(fx.CloseAgentLink(self.s.link.link_id, code, "shutdown" if code == 1000 else reason))
        self.set(lifecycle=Ended(status, reason), link=NoAgent(), turn=Idle())
        outbound.forget_all(self)
        self.note("error" if status is S.ERROR else "system", reason)
        self.publish_info()
        self.emit(fx.ReportEnded(self.s.info))
        if evict_now or self.s.rules.eviction_ttl <= 0:
            self.evict(evicted=not evict_now)
        else:
            self.arm("eviction", self.s.rules.eviction_ttl, m.EvictionDue())

    def dismiss_agent(self, reason: str) -> None:
        """Tell the agent the session is over (``end`` then closes its link)."""
        if isinstance(self.s.link, Connected):
            outbound.send(self, self.s.link.link_id, p.Shutdown(reason=reason))

    def terminate(self, reason: str) -> None:
        if self.s.final:
            return
        self.dismiss_agent(reason)
        self.end(S.TERMINATED, f"Session terminated: {reason}")
        self.remove_container()

    def delete(self) -> None:
        self.set(deleted=True)
        if not self.s.final:
            self.dismiss_agent("session deleted")
            self.end(S.TERMINATED, "deleted", evict_now=True)
        else:
            self.evict(evicted=False)

    def evict(self, evicted: bool) -> None:
        for name in list(self.s.timers):
            self.disarm(name)
        self.remove_container()
        self.set(gone=True)
        self.emit(fx.StopActor(evicted=evicted))


def _visible(info: p.SessionInfo) -> p.SessionInfo:
    """The info minus what changes with every message (posted, not published)."""
    return replace_struct(info, last_message_at=None, last_message_preview=None)


def _durable(state: SessionState) -> tuple[Any, ...]:
    """What a restart must find again; the event counter alone is not worth a write."""
    s = state
    parts = (s.info, s.lifecycle, s.link, s.turn, s.container, s.timers, s.agent_queue, s.gone, s.ids)
    return (*parts, s.link_out, s.unacked, s.manager)


def clean_name(name: str) -> str | None:
    cleaned = "".join(ch for ch in name if ch.isprintable()).strip()
    return cleaned if 1 <= len(cleaned) <= 100 else None
