"""A stateful property test of the pure session core: random lives, checked rules.

Hypothesis drives several sessions through every input a session can get —
container started, failed and exited, token answers, agent connects, drops
and replacements, every agent frame (from the current link and from stale
ones), every user command, timers firing as time moves, terminate and
delete — and checks the invariants after every step. A model of Berth's
agent receives the numbered frames sent to it, loses those in flight when its
link drops, acknowledges, and names what it has when it reconnects: every
frame must reach it exactly once, in order (issue 9). The timing rules are
checked against the configuration, not against the timers the core armed,
so a timer armed a second early fails here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors import effects as fx
from actors import messages as m
from actors.config import BerthConfig
from actors.link_outbound import size_of
from actors.secret import Secret
from actors.session_state import Connected, Ended, Reconnecting, pending_approval, pending_question
from tests.core_driver import CoreDriver
from transport import protocol as p
from transport.protocol import SessionStatus as S

CONFIG = BerthConfig(eviction_ttl=50, startup_timeout=40, reconnect_grace=10, token_retry_delay=3)
APPROVAL_IDS = ("a1", "a2")
QUESTION_IDS = ("q1", "q2")

approvals = st.builds(
    lambda i: p.PendingApproval(id=i, tool_name="Bash", tool_input={"command": "ls"}, timestamp=1.0),
    st.sampled_from(APPROVAL_IDS),
)
questions = st.builds(
    lambda i: p.PendingQuestion(id=i, questions=[p.QuestionItem(question="which?")], timestamp=1.0),
    st.sampled_from(QUESTION_IDS),
)
costs = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())
frames = st.one_of(
    st.just(p.Ready()),
    st.builds(p.SetupProgress, message=st.text(max_size=5)),
    st.builds(
        p.SdkMessage,
        message=st.builds(
            p.ChatMessage,
            id=st.just("x"),
            kind=st.sampled_from(["user", "assistant", "tool_call", "system"]),
            content=st.text(max_size=5),
            timestamp=st.just(1.0),
        ),
    ),
    st.builds(p.Stream, message_id=st.just("m"), tokens=st.lists(st.text(max_size=3), max_size=3)),
    st.builds(p.ApprovalRequest, approval=approvals),
    st.builds(p.Question, question=questions),
    st.builds(
        p.Result, result=st.text(max_size=5), cost_usd=st.floats(allow_nan=True), is_error=st.booleans()
    ),
    st.builds(
        p.StatusUpdate, status=st.sampled_from(["running", "idle", "awaiting_approval", "awaiting_answer"])
    ),
    st.builds(p.SessionInfoUpdate, model=st.none() | st.just("opus"), total_cost_usd=costs),
    st.builds(p.ModelsList, models=st.just([])),
    st.builds(
        p.ApiRetry,
        attempt=st.integers(1, 3),
        max_retries=st.just(3),
        retry_at=st.floats(0, 2e9),
        reason=st.just("overloaded"),
        error_status=st.none() | st.just(529),
    ),
    st.builds(p.RateLimit, status=st.sampled_from(["allowed", "rejected"])),
    st.builds(p.AgentError, message=st.text(max_size=5), fatal=st.booleans()),
)
commands = st.one_of(
    st.builds(m.SendUserMessage, content=st.sampled_from(["", "  ", "hello", "again"])),
    st.builds(m.AnswerApproval, approval_id=st.sampled_from(APPROVAL_IDS), allow=st.booleans()),
    st.builds(m.AnswerQuestion, question_id=st.sampled_from(QUESTION_IDS), answers=st.just({"which?": "a"})),
    st.just(m.InterruptTurn()),
    st.builds(
        m.ChangeSettings, name=st.none() | st.just("renamed"), permission_mode=st.none() | st.just("plan")
    ),
    st.builds(m.ChangeModel, model=st.none() | st.just("sonnet")),
    st.just(m.RequestModels()),
)


@dataclass
class Life:
    """What the test itself remembers of one session, to check the core against."""

    core: CoreDriver
    created_at: float
    links: int = 0
    ended: Ended | None = None
    ended_at: float | None = None
    disconnected_at: float | None = None
    gone: bool = False
    seq: int = 0
    live_links: set[str] = field(default_factory=set)
    #: The model agent: numbered frames sent on its link not yet read, and the highest it has.
    in_flight: list[tuple[str, p.ServerToAgent]] = field(default_factory=list)
    agent_has: int = 0
    #: Every frame the server sent under each number: a resend must be the same frame.
    numbered: dict[int, p.ServerToAgent] = field(default_factory=dict)


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.lives: list[Life] = []

    # ------------------------------------------------------------ helpers

    def pick(self, i: int) -> Life:
        return self.lives[i % len(self.lives)]

    def feed(self, life: Life, message: Any) -> None:
        life.core.now = self.now
        before = life.core.state
        self.check_step(life, before, message, life.core.send(message))

    def check_step(self, life: Life, before: Any, message: Any, effects: tuple[fx.Effect, ...]) -> None:
        core = life.core
        if life.gone:
            assert all(isinstance(e, fx.Reply) and e.outcome is not None for e in effects), (message, effects)
            return
        for effect in effects:
            match effect:
                case fx.Publish(event=event):
                    assert event.seq == life.seq + 1, "event numbers strictly increase by one"
                    life.seq = event.seq
                case fx.SendToAgent(link_id=link_id, frame=frame):
                    assert link_id in life.live_links, "frames go only to a connected link"
                    n = getattr(frame, "n", 0)
                    assert n > 0 or isinstance(frame, p.TokenUpdate), f"{frame!r} is not numbered"
                    assert life.numbered.setdefault(n, frame) == frame, "a number always means one frame"
                    life.in_flight.append((link_id, frame))
                case fx.CloseAgentLink(link_id=link_id):
                    life.live_links.discard(link_id)
                case fx.StopActor(evicted=evicted):
                    life.gone = True
                    if evicted:
                        assert life.ended_at is not None
                        assert self.now >= life.ended_at + CONFIG.eviction_ttl, "evicted before its TTL"
        if isinstance(before.link, Connected) and not isinstance(core.state.link, Connected):
            life.live_links.discard(before.link.link_id)
        state = core.state
        held = sum(size_of(f) for f in (*state.agent_queue, *state.unacked))
        assert state.unacked_size == held, "the byte budget counts exactly what is kept"
        assert [f.n for f in state.unacked] == sorted({f.n for f in state.unacked}), "kept in order"
        if isinstance(core.state.link, Reconnecting) and not isinstance(before.link, Reconnecting):
            life.disconnected_at = self.now
        if life.ended is None and isinstance(core.state.lifecycle, Ended):
            life.ended, life.ended_at = core.state.lifecycle, self.now
            reason = life.ended.reason
            if "startup timed out" in reason:
                assert self.now >= life.created_at + CONFIG.startup_timeout, "startup timeout fired early"
            if "did not reconnect" in reason:
                assert life.disconnected_at is not None
                assert self.now >= life.disconnected_at + CONFIG.reconnect_grace, "grace ended early"

    # ------------------------------------------------------------ rules

    @rule(runner=st.sampled_from(["builtin", "sdk"]), pool=st.booleans())
    def create(self, runner: str, pool: bool) -> None:
        if len(self.lives) >= 4:
            return
        sid = f"s{len(self.lives):015d}"
        core = CoreDriver.create(
            CONFIG, m.SessionSpec(runner=runner), pool=pool, session_id=sid, now=self.now
        )
        life = Life(core, created_at=self.now)
        life.seq = max((e.event.seq for e in core.of(fx.Publish)), default=0)
        self.lives.append(life)

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), token=st.booleans())
    def token_answer(self, i: int, token: bool) -> None:
        answer = Secret("sk-ant-oat01-0123456789abcdef") if token else None
        self.feed(self.pick(i), m.TokenAnswer(answer, None if token else "no credentials"))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), outcome=st.sampled_from(["started", "failed", "exited", "pool-empty"]))
    def container(self, i: int, outcome: str) -> None:
        life = self.pick(i)
        sid = life.core.state.session_id
        message = {
            "started": m.ContainerStarted(sid, "c" * 64),
            "failed": m.ContainerStartFailed(sid, "image missing"),
            "exited": m.ContainerExited(sid, "c" * 64, 137),
            "pool-empty": m.PoolEmpty(sid),
        }[outcome]
        self.feed(life, message)

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3))
    def agent_connects(self, i: int) -> None:
        life = self.pick(i)
        life.links += 1
        link_id = f"link-{life.links}"
        life.live_links.add(link_id)
        self.feed(life, m.AgentConnected(link_id, received=life.agent_has))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3))
    def agent_connects_and_is_ready(self, i: int) -> None:
        """The common path, as one step, so that live sessions are frequent."""
        self.agent_connects(i)
        life = self.pick(i)
        self.feed(life, m.FromAgent(f"link-{life.links}", p.Ready()))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), stale=st.booleans())
    def agent_drops(self, i: int, stale: bool) -> None:
        life = self.pick(i)
        link = life.core.state.link
        link_id = link.link_id if isinstance(link, Connected) and not stale else "link-0"
        self.feed(life, m.AgentDetached(link_id, "network"))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), ack=st.booleans())
    def agent_reads(self, i: int, ack: bool) -> None:
        """The model agent reads what reached it: each number once, in order; then maybe acks."""
        life = self.pick(i)
        link = life.core.state.link
        current = link.link_id if isinstance(link, Connected) else None
        for link_id, frame in life.in_flight:
            if link_id != current:
                continue  # lost in flight when its link went
            n = getattr(frame, "n", 0)
            if n == 0:
                continue
            if n <= life.agent_has:
                continue  # a resend of one it has: dropped, as agent.connection does
            assert n == life.agent_has + 1, f"frame {n} after {life.agent_has}: one was lost"
            life.agent_has = n
        life.in_flight.clear()
        if ack and isinstance(link, Connected):
            self.feed(life, m.FromAgent(link.link_id, p.AgentLinkAck(received=life.agent_has)))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3))
    def a_prompt_is_lost_in_flight_then_the_agent_comes_back(self, i: int) -> None:
        """The drop the numbering is for, as one step so that it is frequent: a prompt
        written to the link, the link gone before the agent read it, a reconnect."""
        life = self.pick(i)
        link = life.core.state.link
        if isinstance(link, Connected):
            self.feed(life, m.SendUserMessage("in flight"))
            self.feed(life, m.AgentDetached(link.link_id, "network"))
        self.agent_connects(i)
        self.agent_reads(i, ack=False)

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), frame=frames, stale=st.booleans())
    def agent_says(self, i: int, frame: p.AgentToServer, stale: bool) -> None:
        life = self.pick(i)
        link = life.core.state.link
        link_id = link.link_id if isinstance(link, Connected) and not stale else "link-0"
        self.feed(life, m.FromAgent(link_id, frame))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3), command=commands)
    def user_command(self, i: int, command: Any) -> None:
        self.feed(self.pick(i), command)

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3))
    def terminate(self, i: int) -> None:
        self.feed(self.pick(i), m.Terminate("by the test"))

    @precondition(lambda self: self.lives)
    @rule(i=st.integers(0, 3))
    def delete(self, i: int) -> None:
        self.feed(self.pick(i), m.Delete())

    @precondition(lambda self: self.lives)
    @rule(seconds=st.sampled_from([0.5, 2.9, 3.0, 9.99, 10.0, 15.0, 39.0, 40.0, 50.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            due = [
                (deadline, n, name)
                for n, life in enumerate(self.lives)
                for name, (deadline, _) in life.core.armed.items()
                if deadline <= target and not life.gone
            ]
            if not due:
                break
            deadline, n, name = min(due)
            self.now = max(self.now, deadline)
            life = self.lives[n]
            _, message = life.core.armed.pop(name)
            self.feed(life, message)
        self.now = target

    @precondition(lambda self: self.lives)
    @rule(
        i=st.integers(0, 3),
        message=st.sampled_from(
            [m.EvictionDue(), m.StartupTimedOut(), m.ReconnectGraceExpired(), m.RetryToken()]
        ),
    )
    def stale_timer_firing(self, i: int, message: Any) -> None:
        """A firing the shell let through late: the core must check it against its timers."""
        life = self.pick(i)
        name = {m.EvictionDue: "eviction", m.StartupTimedOut: "startup"}.get(type(message))
        if name is not None and name in life.core.state.timers:
            return  # not stale: it would be a real firing, at the wrong time
        if isinstance(message, m.ReconnectGraceExpired) and "reconnect-grace" in life.core.state.timers:
            return
        if isinstance(message, m.RetryToken) and "token-retry" in life.core.state.timers:
            return
        before = life.core.state
        self.feed(life, message)
        if not life.gone:
            assert life.core.state.lifecycle == before.lifecycle

    # ------------------------------------------------------------ invariants

    @invariant()
    def every_session_keeps_its_rules(self) -> None:
        for life in self.lives:
            state = life.core.state
            status = state.info.status
            if life.ended is not None:
                assert state.lifecycle == life.ended, "a final state never changes"
                assert status.is_final
                assert life.gone or "eviction" in state.timers, "a final session's eviction is armed or done"
            if life.gone:
                assert not state.timers and not life.core.armed, "nothing stays armed for a gone session"
            reconnecting = isinstance(state.link, Reconnecting)
            assert (status is S.RECONNECTING) == (reconnecting and not state.final)
            if reconnecting:
                assert state.timers.get("reconnect-grace") == state.link.deadline
            waiting_is_visible = not state.final and not reconnecting
            approval, question = pending_approval(state), pending_question(state)
            assert (status is S.AWAITING_APPROVAL) == (approval is not None and waiting_is_visible)
            assert (status is S.AWAITING_ANSWER) == (question is not None and waiting_is_visible)
            if isinstance(state.link, Connected):
                assert state.link.link_id in life.live_links
            assert set(state.timers) == set(life.core.armed) or life.gone
            assert math.isfinite(state.info.total_cost_usd) and state.info.total_cost_usd >= 0


SessionMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_the_session_core_keeps_every_rule_through_random_lives = SessionMachine.TestCase
