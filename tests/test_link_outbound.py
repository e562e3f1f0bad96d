"""The server's frames to its agent on the pure core: numbered, kept, resent, bounded (issue 9)."""

from __future__ import annotations

from dataclasses import replace

from actors import effects as fx
from actors import messages as m
from actors.config import BerthConfig
from actors.link_outbound import RESTART_GAP, size_of
from actors.outcome import Rejected
from actors.secret import Secret
from actors.session_core import resume
from actors.state_codec import SessionStateCodec
from tests.core_driver import CoreDriver
from transport import protocol as p

CONFIG = BerthConfig(eviction_ttl=300, startup_timeout=120, reconnect_grace=30, token_retry_delay=5)


def live(config: BerthConfig = CONFIG, runner: str = "builtin") -> CoreDriver:
    core = CoreDriver.create(config, m.SessionSpec(runner=runner))
    core.send(m.ContainerStarted("s", "c" * 64))
    core.send(m.AgentConnected("link-1"))
    core.send(m.FromAgent("link-1", p.Ready()))
    return core


def sent(effects: tuple[fx.Effect, ...] | list[fx.Effect]) -> list[p.ServerToAgent]:
    return [e.frame for e in effects if isinstance(e, fx.SendToAgent)]


def contents(frames: list[p.ServerToAgent]) -> list[str]:
    return [f.content for f in frames if isinstance(f, p.UserMessage)]


def test_every_frame_to_the_agent_gets_the_next_link_number_and_is_kept_until_acknowledged():
    core = live()
    first = sent(core.send(m.SendUserMessage("one")))
    second = sent(core.send(m.ChangeModel("opus")))
    assert [f.n for f in (*first, *second)] == [1, 2]
    assert [f.n for f in core.state.unacked] == [1, 2]
    core.send(m.FromAgent("link-1", p.AgentLinkAck(received=1)))
    assert [f.n for f in core.state.unacked] == [2]
    core.send(m.FromAgent("link-1", p.AgentLinkAck(received=2)))
    assert core.state.unacked == () and core.state.unacked_size == 0


def test_a_reconnecting_agent_gets_exactly_the_frames_it_did_not_have_in_order_then_the_new_ones():
    core = live()
    for text in ("one", "two", "three"):
        core.send(m.SendUserMessage(text))
    core.send(m.FromAgent("link-1", p.AgentLinkAck(received=1)))  # "two" and "three" were lost in the drop
    core.send(m.AgentDetached("link-1", "network"))
    core.send(m.SendUserMessage("four"))  # held while the agent is away
    effects = core.send(m.AgentConnected("link-2", received=2))  # its hello: it did get "two"
    frames = sent(effects)
    assert contents(frames) == ["three", "four"]
    assert [f.n for f in frames if isinstance(f, p.UserMessage)] == [3, 4]
    assert core.status == "idle"


def test_an_acknowledgement_from_a_replaced_link_is_ignored():
    core = live()
    core.send(m.SendUserMessage("one"))
    core.send(m.AgentConnected("link-2", received=0))
    core.send(m.FromAgent("link-1", p.AgentLinkAck(received=1)))
    assert [f.n for f in core.state.unacked] == [1]


def test_the_token_is_not_numbered_and_every_connection_gets_the_current_one():
    core = live(runner="sdk")
    token = Secret("sk-ant-oat01-" + "a" * 40)
    core.send(m.TokenRefreshed(token))
    assert core.state.unacked == ()  # a lost push is superseded by the next connection's
    core.send(m.AgentDetached("link-1", "network"))
    effects = core.send(m.AgentConnected("link-2", received=0))
    assert fx.PushToken("link-2") in effects


def test_commands_past_the_unacknowledged_byte_budget_are_refused_with_503_and_nothing_is_queued():
    prompt = "x" * 1000
    budget = 3 * size_of(p.UserMessage(content=prompt, id="s0000000000-10")) + 10
    core = live(replace(CONFIG, agent_unacked_bytes=budget))
    core.send(m.AgentDetached("link-1", "network"))  # the agent is away: frames are held
    outcomes = [core.send(m.SendUserMessage(prompt)) for _ in range(4)]
    replies = [next(e.outcome for e in effects if isinstance(e, fx.Reply)) for effects in outcomes]
    assert replies[:3] == [None, None, None]
    refused = replies[3]
    assert isinstance(refused, Rejected) and refused.code == 503
    assert "agent_unacked_bytes" in refused.reason and str(budget) in refused.reason
    assert len(core.state.agent_queue) == 3
    recorded = [e for effects in outcomes for e in effects if isinstance(e, fx.RecordMessage)]
    assert [e.message.kind for e in recorded] == ["user"] * 3  # the refused one is not in the history
    effects = core.send(m.AgentConnected("link-2", received=0))
    assert len(contents(sent(effects))) == 3
    core.send(m.FromAgent("link-2", p.AgentLinkAck(received=3)))
    assert core.state.unacked_size == 0
    accepted = core.send(m.SendUserMessage(prompt))
    assert fx.Reply(None) in accepted


def test_a_session_that_ends_owes_its_agent_nothing():
    core = live()
    core.send(m.SendUserMessage("one"))
    core.send(m.Terminate("done"))
    assert core.state.unacked == () and core.state.agent_queue == () and core.state.unacked_size == 0


def test_after_a_restart_numbers_jump_so_none_is_reused_and_stored_unacked_frames_are_resent():
    core = live()
    core.send(m.SendUserMessage("one"))
    core.send(m.SendUserMessage("two"))
    codec = SessionStateCodec(lambda: core.now, lambda: core.now)
    stored = codec.decode(codec.encode(core.state)).state
    assert [f.n for f in stored.unacked] == [1, 2]
    state, _ = resume(stored, core.instant(), {})
    core.state = state
    assert core.state.link_out == 2 + RESTART_GAP
    effects = core.send(m.AgentConnected("link-9", received=1))  # the agent process outlived the server
    assert contents(sent(effects)) == ["two"]
    new = sent(core.send(m.SendUserMessage("three")))
    assert [f.n for f in new] == [3 + RESTART_GAP]


def test_commands_past_the_unacknowledged_frame_budget_are_refused_with_503_naming_it():
    core = live(replace(CONFIG, agent_unacked_frames=2))
    effects = [core.send(m.ChangeModel(f"m{i}")) for i in range(3)]
    replies = [next(e.outcome for e in step if isinstance(e, fx.Reply)) for step in effects]
    assert replies[:2] == [None, None]
    refused = replies[2]
    assert isinstance(refused, Rejected) and refused.code == 503 and "agent_unacked_frames" in refused.reason
    core.send(m.FromAgent("link-1", p.AgentLinkAck(received=2)))
    assert fx.Reply(None) in core.send(m.ChangeModel("again"))
