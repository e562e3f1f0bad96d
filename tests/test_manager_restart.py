"""A manager's state across a restart, on the pure session core with exact times.

The session is saved in a real ``SqliteStore`` by one "process" (its clock),
read back by ``actors.recovery.recover`` in another whose monotonic clock has
another origin, and driven on from the restored state: queued events, the
pause and its resume-at, and every manager timer (batching, auto-continue,
stale, resume-at) must come back at the deadline they had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from actors import effects as fx
from actors import messages as m
from actors.clock import ManualClock
from actors.config import BerthConfig
from actors.manager_events import ChildActive, ChildReady, ChildStarted, ChildStatus, PauseManager
from actors.manager_onboarding import EXPLORE_Q
from actors.recovery import recover
from actors.runtime import LABEL_APP, LABEL_INSTANCE, LABEL_SESSION, ContainerRecord
from actors.sqlite_store import SqliteStore
from actors.state_codec import SessionStateCodec
from tests.core_driver import CoreDriver
from transport import protocol as p

SID = "mgr0000000000001"
LINK = "link-1"


@dataclass
class OneContainer:
    """The engine after the restart: the session's container still runs."""

    instance: str
    session_id: str

    def list(self, labels: Any) -> list[ContainerRecord]:
        labels = {LABEL_APP: "berth", LABEL_INSTANCE: self.instance, LABEL_SESSION: self.session_id}
        return [ContainerRecord("c-1", "berth-1", labels, running=True)]


@pytest.fixture
def config(tmp_path: Path) -> BerthConfig:
    return BerthConfig(instance_id="restart-test", state_dir=tmp_path / "state", reconnect_grace=600)


def manager(config: BerthConfig) -> CoreDriver:
    """A configured manager whose first turn is over: idle, its nudge armed."""
    d = CoreDriver.create(config, m.SessionSpec(name="boss", manager=True), session_id=SID)
    d.send(m.ContainerStarted(SID, "c-mgr"))
    d.send(m.AgentConnected(LINK))
    d.send(m.FromAgent(LINK, p.Ready()))
    question = d.state.turn.question
    d.send(m.AnswerQuestion(question.id, {EXPLORE_Q: "Explore"}))
    d.send(m.FromAgent(LINK, p.StatusUpdate(status="running")))
    d.send(m.FromAgent(LINK, p.Result(result="ok")))
    assert d.status == "idle" and "manager-continue" in d.armed
    return d


def restart(d: CoreDriver, config: BerthConfig, down: float, mono: float = 7.0) -> CoreDriver:
    """Save ``d`` as its process would, and recover it in a new one ``down`` s later
    whose monotonic clock reads ``mono``; the agent is back before anything is due."""
    wall = d.instant().wall
    old = SqliteStore(config.store_path, codec=SessionStateCodec(lambda: d.now, lambda: wall))
    old.save_session(d.state)
    old.close()
    sid = d.state.session_id
    secrets = config.secrets_root / sid
    secrets.mkdir(parents=True)
    (secrets / "session-token").write_text("agent-token")
    clock = ManualClock(start=mono, wall_start=wall + down)
    store = SqliteStore(config.store_path, codec=SessionStateCodec(clock.now, clock.wall))
    try:
        (found,) = recover(store, config, clock, OneContainer(config.instance_id, sid))  # type: ignore[arg-type]
    finally:
        store.close()
    assert found.restored.then == ()
    after = CoreDriver(found.restored.state, now=mono, wall_offset=clock.wall() - mono)
    after._take((found.restored.state, found.restored.effects))
    # The same agent process, which got every frame sent before the restart (X-Berth-Received).
    after.send(m.AgentConnected("link-2", received=d.state.link_out))
    return after


def sent_texts(d: CoreDriver, since: int = 0) -> list[str]:
    frames = [e.frame for e in d.effects[since:] if isinstance(e, fx.SendToAgent)]
    return [f.content for f in frames if isinstance(f, p.UserMessage)]


def mark(d: CoreDriver) -> int:
    return len(d.effects)


def test_events_queued_for_a_busy_manager_survive_a_restart_and_reach_it_when_its_turn_ends(config):
    d = manager(config)
    d.send(m.SendUserMessage("plan the work"))
    d.send(m.FromAgent(LINK, p.StatusUpdate(status="running")))
    d.send(ChildStarted("kid1", "alpha"))
    d.send(ChildReady("kid1"))
    assert d.state.info.manager is not None and d.state.info.manager.pending_events == 1
    after = restart(d, config, down=30)
    assert after.state.info.manager is not None and after.state.info.manager.pending_events == 1
    start = mark(after)
    after.advance(600)
    assert sent_texts(after, start) == []  # still busy: the events wait for its turn
    after.send(m.FromAgent("link-2", p.Result(result="planned")))
    after.advance(config.manager_batch_delay - 0.01)
    assert sent_texts(after, start) == []
    after.advance(0.01)
    (delivered,) = sent_texts(after, start)
    assert "[CHILD SESSION READY]" in delivered and "alpha" in delivered


def test_a_pending_auto_continue_fires_at_its_stored_deadline_after_a_restart(config):
    d = manager(config)  # the nudge is due 3 s after the turn ended
    d.advance(1.0)
    after = restart(d, config, down=1.5)
    assert "manager-continue" in after.armed
    start = mark(after)
    after.advance(0.49)
    assert sent_texts(after, start) == []
    after.advance(0.01)
    (nudge,) = sent_texts(after, start)
    assert nudge.startswith("Continue your manager loop")


def test_a_nudge_due_while_berth_was_down_is_sent_once_its_agent_is_back(config):
    d = manager(config)
    after = restart(d, config, down=60)
    after.advance(0)
    (nudge,) = sent_texts(after)
    assert nudge.startswith("Continue your manager loop")


def test_a_pending_batch_is_delivered_at_its_stored_deadline_after_a_restart(config):
    d = manager(config)
    d.send(ChildStarted("kid1", "alpha"))
    d.send(ChildReady("kid1"))  # the batch is due 2 s from here
    d.advance(0.5)
    after = restart(d, config, down=1.0)
    assert "manager-batch" in after.armed and "manager-continue" not in after.armed
    start = mark(after)
    after.advance(0.49)
    assert sent_texts(after, start) == []
    after.advance(0.01)
    (delivered,) = sent_texts(after, start)
    assert "[CHILD SESSION READY]" in delivered


def test_a_silent_child_is_reported_stale_at_its_stored_deadline_after_a_restart(config):
    config = replace(config, manager_child_stale=30)
    d = manager(config)
    d.send(ChildStarted("kid1", "alpha"))
    d.send(ChildStatus("kid1", "running"))
    d.send(ChildActive("kid1"))  # its last traffic: stale 30 s from here
    d.advance(10)
    d.send(m.SendUserMessage("wait for alpha"))  # a busy manager: the stale event is only queued
    after = restart(d, config, down=5)
    start = mark(after)
    after.advance(14.99)
    assert after.state.manager is not None and after.state.manager.pending == ()
    after.advance(0.01)
    assert after.state.manager is not None
    events: list[str] = list(after.state.manager.pending)
    assert len(events) == 1
    event = events[0]
    assert "[CHILD SESSION STALE]" in event and "30" in event and sent_texts(after, start) == []


def test_a_pause_with_resume_at_survives_a_restart_and_resumes_at_that_time(config):
    d = manager(config)
    resume_at = d.instant().wall + 100
    d.send(PauseManager(resume_at))
    d.send(ChildStarted("kid1", "alpha"))
    after = restart(d, config, down=40)
    after.send(ChildReady("kid1"))  # kept while paused; the info is shown anew
    info = after.state.info.manager
    assert info is not None and info.paused and info.pending_events == 1
    assert info.resume_at == pytest.approx(resume_at, abs=1e-3)
    assert [t for t in after.armed if t.startswith("manager-")] == ["manager-resume"]
    start = mark(after)
    after.advance(59.99)
    assert after.state.manager is not None and after.state.manager.paused
    after.advance(0.01)
    assert after.state.manager is not None and not after.state.manager.paused
    after.advance(config.manager_batch_delay)
    (delivered,) = sent_texts(after, start)
    assert "[CHILD SESSION READY]" in delivered


def test_a_resume_at_that_passed_while_berth_was_down_resumes_at_once(config):
    d = manager(config)
    d.send(PauseManager(d.instant().wall + 100))
    after = restart(d, config, down=500)
    after.advance(0)
    assert after.state.manager is not None and not after.state.manager.paused
    assert after.state.info.manager is not None and after.state.info.manager.resume_at is None


def test_a_pause_without_resume_at_survives_a_restart_and_nothing_is_armed(config):
    d = manager(config)
    d.send(PauseManager(None))
    after = restart(d, config, down=10)
    assert after.state.manager is not None and after.state.manager.paused
    assert not [t for t in after.armed if t.startswith("manager-")]
    after.advance(3600)
    assert sent_texts(after) == []


def test_a_managed_childs_first_traffic_after_a_restart_is_reported_to_its_manager(config):
    d = CoreDriver.create(config, m.SessionSpec(name="kid", managed_by=SID), session_id="kid0000000000001")
    d.send(m.ContainerStarted("kid0000000000001", "c-1"))
    d.send(m.AgentConnected(LINK))
    d.send(m.FromAgent(LINK, p.Ready()))
    d.advance(60)
    after = restart(d, config, down=5, mono=2.0)  # a rebooted host: the new clock reads less
    start = mark(after)
    after.send(m.FromAgent("link-2", p.StatusUpdate(status="running")))
    told = [e.message for e in after.effects[start:] if isinstance(e, fx.TellSession)]
    assert ChildActive("kid0000000000001") in told


def test_a_manager_whose_agent_restarts_before_the_onboarding_answer_asks_again_and_takes_it(config):
    d = CoreDriver.create(config, m.SessionSpec(name="boss", manager=True), session_id=SID)
    d.send(m.ContainerStarted(SID, "c-mgr"))
    d.send(m.AgentConnected(LINK))
    d.send(m.FromAgent(LINK, p.Ready()))
    d.send(m.FromAgent(LINK, p.Ready()))  # a new agent process: the turn (and its question) ended
    assert d.status == "awaiting_answer"
    question = d.state.turn.question
    assert fx.Reply(None) in d.send(m.AnswerQuestion(question.id, {EXPLORE_Q: "Explore"}))
    assert len(sent_texts(d)) == 1 and d.state.manager is not None and d.state.manager.onboarding == "done"


def test_a_child_at_work_whose_stale_deadline_passed_while_berth_was_down_is_reported_at_once(config):
    config = replace(config, manager_child_stale=30)
    d = manager(config)
    d.send(ChildStarted("kid1", "alpha"))
    d.send(ChildStatus("kid1", "running"))
    d.send(m.SendUserMessage("wait for alpha"))
    after = restart(d, config, down=100)
    after.advance(0)
    assert after.state.manager is not None
    events: list[str] = list(after.state.manager.pending)
    assert len(events) == 1 and "[CHILD SESSION STALE]" in events[0] and "100" in events[0]
