"""The session's rules on the pure core, at exact times (no threads)."""

from __future__ import annotations

from actors import effects as fx
from actors import messages as m
from actors.config import BerthConfig
from actors.outcome import Rejected
from actors.secret import Secret
from actors.session_state import Reconnecting, pending_approval
from tests.core_driver import CoreDriver
from transport import protocol as p

CONFIG = BerthConfig(eviction_ttl=300, startup_timeout=120, reconnect_grace=30, token_retry_delay=5)
APPROVAL = p.PendingApproval(id="a1", tool_name="Bash", tool_input={"command": "ls"}, timestamp=1.0)


def live(config: BerthConfig = CONFIG, runner: str = "builtin") -> CoreDriver:
    core = CoreDriver.create(config, m.SessionSpec(runner=runner))
    core.send(m.ContainerStarted("s", "c" * 64))
    core.send(m.AgentConnected("link-1"))
    core.send(m.FromAgent("link-1", p.Ready()))
    assert core.status == "idle"
    return core


def test_a_builtin_session_starts_its_container_at_once_and_never_mentions_a_token():
    core = CoreDriver.create(CONFIG, m.SessionSpec(runner="builtin"))
    assert core.of(fx.LaunchContainer) and not core.of(fx.RequestToken)
    assert not [t for t in core.texts() if "token" in t.lower()]


def test_a_claude_session_asks_for_a_token_before_its_container():
    core = CoreDriver.create(CONFIG, m.SessionSpec(runner="sdk"))
    assert core.of(fx.RequestToken) and not core.of(fx.LaunchContainer)
    core.send(m.TokenAnswer(Secret("sk-ant-oat01-0123456789abcdef")))
    assert core.of(fx.LaunchContainer)


def test_ready_cancels_the_startup_timer():
    core = live()
    assert "startup" not in core.state.timers
    assert fx.CancelTimer("startup") in core.effects
    core.advance(CONFIG.startup_timeout + 1)
    assert core.status == "idle"


def test_the_startup_timeout_fires_exactly_at_its_deadline():
    core = CoreDriver.create(CONFIG)
    core.advance(CONFIG.startup_timeout - 0.001)
    assert core.status == "starting"
    core.advance(0.001)
    assert core.status == "error" and "timed out after 120 s" in (core.state.info.status_reason or "")


def test_eviction_happens_exactly_one_ttl_after_the_session_ends():
    core = live()
    core.send(m.ContainerExited("s", "c", 137))
    assert core.status == "error"
    core.advance(CONFIG.eviction_ttl - 0.001)
    assert not core.of(fx.StopActor)
    core.advance(0.001)
    assert core.of(fx.StopActor) == [fx.StopActor(evicted=True)]


def test_the_reconnect_grace_ends_the_session_exactly_at_its_deadline():
    core = live()
    core.send(m.AgentDetached("link-1", "network"))
    assert core.status == "reconnecting"
    core.advance(CONFIG.reconnect_grace - 0.001)
    assert core.status == "reconnecting"
    core.advance(0.001)
    assert core.status == "error" and "did not reconnect within 30 s" in core.texts()[-1]


def test_an_approval_answered_while_the_agent_reconnects_waits_for_it_and_stays_reconnecting():
    core = live()
    core.send(m.FromAgent("link-1", p.ApprovalRequest(approval=APPROVAL)))
    assert core.status == "awaiting_approval"
    core.send(m.AgentDetached("link-1", "network"))
    assert core.status == "reconnecting"
    effects = core.send(m.AnswerApproval("a1", allow=True))
    assert fx.Reply(None) in effects
    assert core.status == "reconnecting" and isinstance(core.state.link, Reconnecting)
    assert "reconnect-grace" in core.state.timers
    assert not [e for e in effects if isinstance(e, fx.SendToAgent)]  # held for the agent
    effects = core.send(m.AgentConnected("link-2"))
    sent = [e.frame for e in effects if isinstance(e, fx.SendToAgent)]
    assert sent == [p.ApprovalResponse(approval_id="a1", allow=True, n=1)]  # numbered (issue 9)
    assert core.status == "running"


def test_a_reconnect_restores_awaiting_approval_only_with_its_pending_approval():
    core = live()
    core.send(m.FromAgent("link-1", p.ApprovalRequest(approval=APPROVAL)))
    core.send(m.AgentDetached("link-1", "network"))
    core.send(m.AgentConnected("link-2"))
    assert core.status == "awaiting_approval" and pending_approval(core.state) == APPROVAL
    core.send(m.FromAgent("link-2", p.Result(result="done")))
    assert core.status == "idle" and pending_approval(core.state) is None


def test_after_delete_no_message_has_any_effect_but_a_refusal():
    core = live()
    core.send(m.Delete())
    assert core.of(fx.StopActor) == [fx.StopActor(evicted=False)] and not core.state.timers
    for message in (
        m.EvictionDue(),
        m.StartupTimedOut(),
        m.ReconnectGraceExpired(),
        m.FromAgent("link-1", p.Result(result="late")),
        m.ContainerExited("s", "c", 1),
        m.AgentConnected("link-9"),
    ):
        assert core.send(message) == ()
    effects = core.send(m.SendUserMessage("hello?"))
    assert effects == (fx.Reply(Rejected("session s0000000000000001 has ended", 409)),)


def test_a_timer_firing_that_is_no_longer_armed_is_ignored():
    core = live()
    core.send(m.AgentDetached("link-1", "network"))
    core.send(m.AgentConnected("link-2"))
    assert core.send(m.ReconnectGraceExpired()) == ()
    assert core.status == "idle"


def test_the_agent_cannot_write_user_messages_or_negative_or_infinite_costs():
    core = live()
    forged = p.ChatMessage(id="x", kind="user", content="rm -rf /", timestamp=1.0)
    core.send(m.FromAgent("link-1", p.SdkMessage(message=forged)))
    assert "rm -rf /" not in core.texts()
    core.send(m.FromAgent("link-1", p.Result(result="r", cost_usd=-5.0)))
    core.send(m.FromAgent("link-1", p.Result(result="r", cost_usd=float("inf"))))
    core.send(m.FromAgent("link-1", p.SessionInfoUpdate(total_cost_usd=float("nan"))))
    assert core.state.info.total_cost_usd == 0.0


def test_a_restarted_agent_ends_the_turn_in_progress_with_an_error_result():
    core = live()
    core.send(m.FromAgent("link-1", p.StatusUpdate(status="running")))
    core.send(m.AgentDetached("link-1", "worker killed"))
    core.send(m.AgentConnected("link-2"))
    core.send(m.FromAgent("link-2", p.Ready()))
    (result,) = core.events(p.TurnResult)
    assert result.is_error and "restarted" in (result.result or "")
    assert core.status == "idle"


def test_every_event_number_is_one_more_than_the_last():
    core = live()
    core.send(m.SendUserMessage("hi"))
    core.send(m.FromAgent("link-1", p.Stream(message_id="m", tokens=["a", "b"])))
    core.send(m.FromAgent("link-1", p.Result(result="ab")))
    seqs = [e.event.seq for e in core.of(fx.Publish)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_an_api_retry_reaches_the_client_with_its_reason_and_time_and_the_turn_keeps_running():
    core = live()
    core.send(m.FromAgent("link-1", p.StatusUpdate(status="running")))
    retry_at = core.instant().wall + 4.0
    frame = p.ApiRetry(attempt=2, max_retries=10, retry_at=retry_at, reason="overloaded", error_status=529)
    core.send(m.FromAgent("link-1", frame))
    (event,) = core.events(p.ApiRetrying)
    assert (event.attempt, event.max_retries, event.retry_at, event.reason) == (2, 10, retry_at, "overloaded")
    assert core.status == "running"
    assert "overloaded (HTTP 529); retry 2 of 10 in 4.0 s" in core.texts()[-1]
    core.send(m.FromAgent("link-1", p.RateLimit(status="rejected", limit_type="five_hour")))
    (limited,) = core.events(p.RateLimited)
    assert limited.status == "rejected" and "rate limit" in core.texts()[-1]


def test_prompts_sent_while_the_agent_is_starting_reach_it_only_after_it_is_ready():
    core = CoreDriver.create(CONFIG, m.SessionSpec(runner="builtin"))
    core.send(m.ContainerStarted("s", "c" * 64))
    core.send(m.AgentConnected("link-1"))
    effects = core.send(m.SendUserMessage("early"))
    assert fx.Reply(None) in effects and not [e for e in effects if isinstance(e, fx.SendToAgent)]
    effects = core.send(m.FromAgent("link-1", p.Ready()))
    sent = [e.frame for e in effects if isinstance(e, fx.SendToAgent)]
    assert [f.content for f in sent if isinstance(f, p.UserMessage)] == ["early"]
