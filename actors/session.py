"""The SessionActor: a thin shell around one session's pure core.

Every rule lives in ``actors.session_core.step``. This actor feeds it each
message with the current time, keeps the state it returns (the only writer),
and carries out the effects: sends on the agent link, the journal, timers,
and tells to the token, container and pool actors and the supervisor.

On stop every timer is cancelled (a firing already queued is recognised as
stale and dropped), every agent link is closed and token broadcasts end. On
an unhandled exception (``on_failure``) the state from before the failing
message still holds; the crash goes through the same terminal transition as
any error, and the final view is reported to the supervisor, which keeps it
until eviction.
"""

from __future__ import annotations

import logging
import queue
import traceback
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors import effects as fx
from actors import messages as m
from actors.clock import Clock
from actors.config import BerthConfig
from actors.directory import Directory
from actors.events import EventBus
from actors.guarded_start import GuardedStart
from actors.journal import Journal
from actors.outcome import Rejected
from actors.recovery import Restored
from actors.secret import Secret
from actors.session_core import start, step
from actors.session_state import (
    Connected,
    Instant,
    SessionRules,
    SessionState,
    new_session,
    pending_approval,
    pending_question,
)
from actors.settle import answer_probe
from actors.store import NullStore, SessionStore
from actors.timers import ActorTimers, TimerFired, TimerService
from transport import protocol as p
from transport.link_sequence import LinkSequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionDeps:
    config: BerthConfig
    timers: TimerService
    supervisor: m.ActorRef
    token: Any
    container: Any
    bus: EventBus
    pool: Any | None = None
    store: SessionStore = field(default_factory=NullStore)
    #: Where a session finds another's actor (a child its manager's, a manager its children's).
    directory: Directory | None = None


class SessionActor(GuardedStart, pykka.ThreadingActor):
    #: Python walks the exit locks of every live non-daemon thread each time one
    #: starts (``threading._maintain_shutdown_locks``): with non-daemon sessions a
    #: create cost O(sessions). Nothing is lost at exit: Berth stops its trees
    #: from threading's exit hook, before the interpreter stops any thread.
    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        """pykka's hook for the inbox: a ``SimpleQueue`` (C, no Conditions) in place
        of ``queue.Queue`` saves ~4 KB of each of 10,000 idle sessions."""
        return queue.SimpleQueue()

    def __init__(
        self,
        session_id: str,
        spec: m.SessionSpec,
        agent_token: Secret,
        cell: m.InfoCell,
        deps: SessionDeps,
        manager_token: Secret | None = None,
        restored: Restored | None = None,
    ) -> None:
        super().__init__()
        self._manager_token = manager_token  # a manager session's scoped API token (issue 11)
        self.session_id = session_id
        self._agent_token = agent_token
        self._cell = cell
        self._deps = deps
        self._clock: Clock = deps.timers.clock
        rules = SessionRules.of(deps.config, spec, use_pool=deps.pool is not None)
        self.state: SessionState = new_session(session_id, spec, rules, self._now())
        config = deps.config
        self._journal = Journal(config.history_limit, config.event_log_limit, (deps.bus.publish,))
        #: Recovered after a restart (actors.recovery): resumed instead of started.
        self._restored = restored
        self._note_link = getattr(deps.store, "note_link_received", None)
        self._begin_link_frames = getattr(deps.store, "begin_link_frames", None)
        #: Which agent frames this session already applied (issue 9, transport.link_sequence).
        self._link_seq = (
            LinkSequence(restored.link_received, restored.link_epoch)
            if restored is not None
            else LinkSequence()
        )
        if restored is not None:
            self.state = restored.state
            self._journal.restore(restored.events, restored.history, restored.seq_gap)
        self._links: dict[str, m.AgentLink] = {}
        self._timers: ActorTimers  # set in on_start, when actor_ref exists
        self.handled = 0

    # ------------------------------------------------------------ lifecycle

    def _begin(self) -> None:
        self._timers = ActorTimers(self._deps.timers, self.actor_ref)
        if self.state.rules.needs_token:
            self._deps.token.tell(m.SubscribeTokens(self.actor_ref))
        if self._restored is None:
            self._apply(*start(self.state, self._now()))
            return
        self._apply(self._restored.state, self._restored.effects)
        for message in self._restored.then:
            self._run(message)

    def on_stop(self) -> None:
        self._release("session stopped")

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        reason = f"{exc_type.__name__}: {exc}"
        log.error(
            "session %s crashed: %s\n%s",
            self.session_id,
            reason,
            "".join(traceback.format_exception(exc_type, exc, tb)),
        )
        try:
            state, effects = step(self.state, m.SessionFailed(reason), self._now())
            self.state = state
            # The actor is dying: the supervisor posts its final view and arms eviction.
            skipped = fx.StartTimer | fx.StopActor | fx.ReportEnded | fx.PostInfo
            self._carry_out(e for e in effects if not isinstance(e, skipped))
        finally:
            view = self._view()
            self._tell(
                self._deps.supervisor, m.SessionCrashed(self.session_id, view, f"Session crashed: {reason}")
            )
            self._release("session crashed")

    def _release(self, why: str) -> None:
        self._timers.cancel_all()
        for link in self._links.values():
            link.close(4004, why)
        self._links.clear()
        self._journal.clear_subscribers()
        if self.state.rules.needs_token:
            self._tell(self._deps.token, m.UnsubscribeTokens(self.actor_ref))

    # ------------------------------------------------------------ dispatch

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Probe):
            return answer_probe(self, self.handled)
        self.handled += 1
        match message:
            case m.Command(command=command, reply=reply):
                outcome = self._run(command)
                when_durable = getattr(self._deps.store, "when_durable", None)
                if when_durable is not None:  # issue 9: acknowledged only once stored, with its batch
                    when_durable(lambda: _answer(reply, outcome), urgent=False)
                else:
                    _answer(reply, outcome)
            case TimerFired():
                fired = self._timers.accept(message)
                if fired is not None:
                    self._run(fired)
            case m.AgentAttached(link=link):
                self._links[link.link_id] = link
                self._link_seq.attached(getattr(link, "epoch", ""))
                link.send(p.LinkResume(received=self._link_seq.received))
                # The agent's hello says which of our numbered frames it has (issue 9).
                self._run(m.AgentConnected(link.link_id, getattr(link, "received", 0)))
            case m.FromAgent(link_id=link_id, frame=frame) if frame.n:
                self._begin_frames()
                outcome = self._numbered(message)
                self._acknowledge(link_id)
                return outcome
            case m.FromAgentBatch(link_id=link_id, frames=frames):
                numbered = any(frame.n for frame in frames)
                if numbered:
                    self._begin_frames()
                for frame in frames:  # the core steps frame by frame, as if told one by one
                    single = m.FromAgent(link_id, frame)
                    self._numbered(single) if frame.n else self._run(single)
                if numbered:  # one position and one acknowledgement for the whole read
                    self._acknowledge(link_id)
            case m.LinkStored(link_id=link_id, received=received):
                if link_id in self._links and self.state.link == Connected(link_id):
                    try:
                        self._links[link_id].send(p.LinkAck(received=received))
                    except Exception as exc:  # the link closed meanwhile: its agent resumes later
                        log.debug("link_ack not sent: %s", exc)
                next_ack = self._link_seq.ack_sent()
                if next_ack is not None:
                    self._ack_when_stored(link_id, next_ack)
            case m.Subscribe(sink=sink, since=since):
                self._journal.subscribe(sink, since, self._snapshot)
            case m.Unsubscribe(sink=sink):
                self._journal.unsubscribe(sink)
            case m.ReplayKept(sink=sink):
                sink(self._journal.kept())
            case m.GetView():
                return self._view()
            case _:
                return self._run(message)
        return None

    def _acknowledge(self, link_id: str) -> None:
        """Acknowledge the agent's frames once what they did is stored (one ack per batch)."""
        if self._note_link is not None:
            self._note_link(self.session_id, self._link_seq.epoch, self._link_seq.received)
        due = self._link_seq.ack_due()
        if due is not None:
            self._ack_when_stored(link_id, due)

    def _ack_when_stored(self, link_id: str, received: int) -> None:
        stored = m.LinkStored(link_id, received)
        when_durable = getattr(self._deps.store, "when_durable", None)
        if when_durable is None:
            self.actor_ref.tell(stored)
        else:
            when_durable(lambda: self._tell(self.actor_ref, stored), urgent=False)

    def _begin_frames(self) -> None:
        """Tell the store that agent frames follow; ``_acknowledge`` ends them, so it
        commits their events together with the position that names them."""
        if self._begin_link_frames is not None:
            self._begin_link_frames(self.session_id)

    def _numbered(self, message: m.FromAgent) -> Rejected | None:
        """A numbered agent frame: applied once (the caller acknowledges it once stored)."""
        if self.state.link == Connected(message.link_id) and not self._link_seq.accept(message.frame.n):
            return None  # a resend of a frame this session already applied
        return self._run(message)

    def _run(self, message: Any) -> Rejected | None:
        state, effects = step(self.state, message, self._now())
        return self._apply(state, effects)

    def _apply(self, state: SessionState, effects: tuple[fx.Effect, ...]) -> Rejected | None:
        self.state = state
        return self._carry_out(effects)

    def _carry_out(self, effects: Any) -> Rejected | None:
        outcome: Rejected | None = None
        for effect in effects:
            match effect:
                case fx.SendToAgent(link_id=link_id, frame=frame):
                    if link_id in self._links:
                        self._links[link_id].send(frame)
                case fx.Publish(event=event):
                    self._journal.append(event)
                    self._deps.store.append_event(self.session_id, event)
                case fx.RecordMessage(message=message):
                    self._journal.history.append(message)
                case fx.PostInfo(info=info):
                    self._cell.info = info
                case fx.PushToken(link_id=link_id):
                    link, token = self._links.get(link_id), self.state.token
                    if link is not None and token is not None:
                        link.send(p.TokenUpdate(token=token.reveal()))
                case fx.CloseAgentLink(link_id=link_id, code=code, reason=reason):
                    closing = self._links.pop(link_id, None)
                    if closing is not None:
                        closing.close(code, reason)
                case fx.StartTimer(name=name, delay=delay, message=msg):
                    self._timers.start(name, delay, msg)
                case fx.CancelTimer(name=name):
                    self._timers.cancel(name)
                case fx.RequestToken():
                    self._tell(self._deps.token, m.EnsureFreshToken(self.actor_ref))
                case fx.LaunchContainer(env=env, from_pool=from_pool):
                    self._launch(env, from_pool)
                case fx.RemoveContainer():
                    self._tell(self._deps.container, m.RemoveContainer(self.session_id))
                case fx.ReportEnded(info=info):
                    self._tell(self._deps.supervisor, m.SessionChanged(info))
                case fx.StopActor(evicted=evicted):
                    if evicted:
                        self._tell(self._deps.supervisor, m.SessionEvicted(self.session_id))
                    self.stop()
                case fx.Persist():
                    self._deps.store.save_session(self.state)
                case fx.Reply(outcome=result):
                    outcome = result
                case fx.TellSession(session_id=sid, message=msg):  # manager <-> children (issue 11)
                    entry = self._deps.directory.get(sid) if self._deps.directory is not None else None
                    if entry is None:  # just recovered: the directory is published after every start
                        self._tell(self._deps.supervisor, m.ForwardToSession(sid, msg))
                    elif entry.ref is not None:
                        self._tell(entry.ref, msg)
                case fx.EndSession(session_id=sid, delete=delete, reason=reason):
                    ending = m.DeleteSession(sid) if delete else m.TerminateSession(sid, reason)
                    self._tell(self._deps.supervisor, ending)
        return outcome

    # ------------------------------------------------------------ effects

    def _launch(self, env: Any, from_pool: bool) -> None:
        if from_pool and self._deps.pool is not None:
            self._tell(self._deps.pool, m.ClaimContainer(self.session_id, self.actor_ref, self._assignment()))
            return
        secrets = {"session-token": self._agent_token}
        if self.state.token is not None:
            secrets["oauth-token"] = self.state.token
        if self._deps.config.github_token is not None:
            secrets["github-token"] = self._deps.config.github_token
        if self._manager_token is not None:
            secrets["manager-token"] = self._manager_token
        start = m.StartContainer(self.session_id, self.actor_ref, secrets, env, self.state.spec.container)
        self._tell(self._deps.container, start)

    def _assignment(self) -> p.Assign:
        spec, token, github = self.state.spec, self.state.token, self._deps.config.github_token
        return p.Assign(
            session_id=self.session_id,
            session_token=self._agent_token.reveal(),
            oauth_token=token.reveal() if token else None,
            github_token=github.reveal() if github else None,
            repo_url=spec.repo_url,
            branch=spec.branch,
            permission_mode=self.state.info.permission_mode,
            model=spec.model,
            runner=spec.runner,
        )

    def _now(self) -> Instant:
        return Instant(self._clock.now(), self._clock.wall())

    # ------------------------------------------------------------ views

    def _view(self) -> m.SessionView:
        return m.SessionView(
            info=self.state.info,
            history=tuple(self._journal.history),
            pending_approval=pending_approval(self.state),
            pending_question=pending_question(self.state),
            seq=self._journal.seq,
            timers=frozenset(self.state.timers),
            agent_connected=isinstance(self.state.link, Connected),
        )

    def _snapshot(self) -> p.Snapshot:
        return p.Snapshot(
            session_id=self.session_id,
            seq=self._journal.seq,
            session=self.state.info,
            history=list(self._journal.history),
            pending_approval=pending_approval(self.state),
            pending_question=pending_question(self.state),
        )

    @staticmethod
    def _tell(ref: Any, message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            log.debug("dropped %r: recipient stopped", type(message).__name__)


def _answer(reply: Any, outcome: Rejected | None) -> None:
    try:
        reply(outcome)
    except Exception:
        log.exception("a command's reply failed")
