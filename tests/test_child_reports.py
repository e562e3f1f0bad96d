"""What a managed child tells its manager."""

from __future__ import annotations

from actors.child_reports import (
    ManagedBy,
    agent_traffic,
    assistant_said,
    status_changed,
    turn_ended,
    user_message,
)
from actors.config import BerthConfig
from actors.effects import TellSession
from actors.manager_events import (
    ChildActive,
    ChildCompleted,
    ChildEnded,
    ChildFailed,
    ChildReady,
    ChildStatus,
)
from actors.manager_rules import ManagerRules
from transport.protocol import SessionStatus as S


def test_agent_traffic_is_reported_at_most_once_per_interval():
    rules, link, told = ManagerRules.of(BerthConfig(), manager_activity_interval=1.0), ManagedBy("m"), []
    effects: list[TellSession] = []
    for t in (0.0, 0.5, 0.999, 1.0, 1.5, 2.1):
        link, effects = agent_traffic(link, "c", 100 + t, rules)
        told += [100 + t for _ in effects]
    assert told == [100.0, 101.0, 102.1]
    assert effects == [TellSession("m", ChildActive("c"))]


def test_status_changes_map_to_reports_for_the_manager():
    link = ManagedBy("m")
    assert status_changed(link, "c", S.STARTING, S.IDLE, None) == [TellSession("m", ChildReady("c"))]
    assert status_changed(link, "c", S.RUNNING, S.IDLE, None) == []
    assert status_changed(link, "c", S.RECONNECTING, S.IDLE, None) == [
        TellSession("m", ChildStatus("c", "idle"))
    ]
    assert status_changed(link, "c", S.IDLE, S.RUNNING, None) == [
        TellSession("m", ChildStatus("c", "running"))
    ]
    assert status_changed(link, "c", S.RUNNING, S.ERROR, "boom") == [
        TellSession("m", ChildFailed("c", "boom"))
    ]
    assert status_changed(link, "c", S.IDLE, S.TERMINATED, "x") == [
        TellSession("m", ChildEnded("c", "terminated"))
    ]


def test_a_completed_turn_carries_only_that_turns_assistant_output_bounded_to_its_latest_part():
    rules = ManagerRules.of(BerthConfig(), manager_child_output_limit=10)
    link = assistant_said(ManagedBy("m"), "old turn", rules)
    link = user_message(link)
    link = assistant_said(link, "a1", rules)
    link = assistant_said(link, "a2", rules)
    link, told = turn_ended(link, "c", False)
    assert told == [TellSession("m", ChildCompleted("c", "a1\n\na2", False))]
    assert link.output == ""
    link = assistant_said(link, "0123456789ABC", rules)
    assert link.output == "…456789ABC" and len(link.output) == 10
