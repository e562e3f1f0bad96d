"""What a managed child tells its manager."""

from __future__ import annotations

from dataclasses import replace

from actors.child_reports import ManagedBy, agent_traffic, status_changed, turn_ended, turn_output
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
from transport.protocol import ChatMessage
from transport.protocol import SessionStatus as S


def msg(kind: str, content: str) -> ChatMessage:
    return ChatMessage(id=content, kind=kind, content=content, timestamp=0)  # type: ignore[arg-type]


def test_agent_traffic_is_reported_at_most_once_per_interval():
    config, link, told = BerthConfig(manager_activity_interval=1.0), ManagedBy("m"), []
    for t in (0.0, 0.5, 0.999, 1.0, 1.5, 2.1):
        link, effects = agent_traffic(link, "c", 100 + t, config)
        told += [100 + t for _ in effects]
    assert told == [100.0, 101.0, 102.1]
    assert effects == [TellSession("m", ChildActive("c"))]


def test_status_changes_map_to_reports_for_the_manager():
    link = ManagedBy("m")
    assert status_changed(link, "c", S.STARTING, S.IDLE, None) == [TellSession("m", ChildReady("c"))]
    assert status_changed(link, "c", S.RUNNING, S.IDLE, None) == []
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
    history = [msg("user", "first"), msg("assistant", "old"), msg("user", "second"), msg("assistant", "a1")]
    history.append(msg("tool_call", "Bash"))
    history.append(msg("assistant", "a2"))
    assert turn_output(history, 100) == "a1\n\na2"
    assert turn_output([msg("user", "u"), msg("assistant", "0123456789")], 5) == "…6789"
    config = replace(BerthConfig(), manager_child_output_limit=100)
    assert turn_ended(ManagedBy("m"), "c", history, False, config) == [
        TellSession("m", ChildCompleted("c", "a1\n\na2", False))
    ]
