"""The agent frame budget and rules, as pure functions of frames and time."""

from __future__ import annotations

import time

import pytest

from actors.config import BerthConfig
from transport.agent_guard import AgentGuards, FrameRate
from transport.limits import Limits
from transport.protocol import FrameError, SdkMessage


def test_a_frame_budget_allows_a_burst_then_paces_to_its_rate():
    rate = FrameRate(rate=100.0, burst=3, now=0.0)
    assert [rate.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.take(0.0) == pytest.approx(0.01)  # one frame over: wait a hundredth
    assert rate.take(0.01) == pytest.approx(0.01)  # still in debt
    assert rate.take(1.0) == 0.0  # a quiet second refills it (up to the burst)


def test_a_new_connection_of_the_same_session_does_not_get_a_fresh_budget():
    limits = Limits.from_config(BerthConfig(agent_frame_rate=10.0, agent_frame_burst=2))
    guards = AgentGuards(limits)
    first = guards.for_key("s1")
    now = time.monotonic()
    assert [first.pause(now), first.pause(now)] == [0.0, 0.0]
    assert guards.for_key("s1").pause(now) > 0  # reconnected: still over budget
    assert guards.for_key("s2").pause(now) == 0.0  # another session has its own


def test_a_session_over_its_byte_budget_waits_even_within_its_frame_budget():
    config = BerthConfig(
        agent_frame_rate=1e3, agent_frame_burst=10, agent_byte_rate=1e3, agent_byte_burst=3000
    )
    limits = Limits.from_config(config)
    guard = AgentGuards(limits).for_key("s")
    assert [guard.pause(0.0, 1000) for _ in range(3)] == [0.0, 0.0, 0.0]  # the byte burst
    assert guard.pause(0.0, 500) == pytest.approx(0.5)  # 500 bytes over at 1000 bytes/s
    assert guard.pause(0.0, 10) == pytest.approx(0.51)  # a small frame waits too: the debt is the session's
    assert guard.pause(10.0, 2000) == 0.0  # refilled (to the burst, no further)
    assert guard.pause(10.0, 1500) == pytest.approx(0.5)


def test_an_agent_authored_user_message_and_an_oversized_model_are_refused():
    guard = AgentGuards(Limits.from_config(BerthConfig(max_model_chars=10))).for_key("s")
    forged = b'{"type":"sdk_message","message":{"id":"1","kind":"user","content":"x","timestamp":1}}'
    with pytest.raises(FrameError, match="may not author 'user' messages"):
        guard.check(forged)
    with pytest.raises(FrameError, match="model is 11 characters long; the limit is 10"):
        guard.check(b'{"type":"session_info_update","model":"' + b"m" * 11 + b'"}')
    fine = guard.check(forged.replace(b'"user"', b'"assistant"'))
    assert isinstance(fine, SdkMessage)


def test_an_error_never_echoes_a_huge_value_back():
    guard = AgentGuards(Limits.from_config(BerthConfig())).for_key("s")
    with pytest.raises(FrameError) as refused:
        guard.check(b'{"type":"status_update","status":"' + b"z" * 100_000 + b'"}')
    message = str(refused.value)
    assert len(message) <= 1000 and message.endswith("at `$.status`") and "characters cut" in message
