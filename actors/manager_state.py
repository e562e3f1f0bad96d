"""A manager session's state as a value, and what its info shows of it.

``actors.manager_core.step_manager`` is the only thing that makes a new
``ManagerState`` from an old one; the session core keeps it in the
session's state (``SessionState.manager``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from actors.manager_onboarding import Preferences
from actors.manager_rules import ManagerRules
from transport.protocol import ChildSummary, ManagerInfo, SessionStatus

BATCH = "manager-batch"
CONTINUE = "manager-continue"
RESUME = "manager-resume"
STALE = "manager-stale:"

#: Children that will report by themselves: they hold auto-continue back.
AT_WORK = ("starting", "running", "reconnecting")
#: Children whose silence means something: the stale watch covers them.
WATCHED = ("running", "reconnecting")

CONTINUE_TEXT = "Continue your manager loop. Check on your child sessions and proceed with the next step."
EVENT_SEPARATOR = "\n\n---\n\n"


@dataclass(frozen=True)
class Child:
    id: str
    name: str
    status: str = "starting"
    last_activity: float = 0.0
    stale_reported: bool = False


@dataclass(frozen=True)
class ManagerState:
    manager_id: str
    children: tuple[Child, ...] = ()
    step: str = "idle"
    pending: tuple[str, ...] = ()
    #: Events that gave way to newer ones since the last delivery.
    dropped: int = 0
    #: The manager's agent is between turns (False before its first ready).
    idle: bool = False
    batch_armed: bool = False
    continue_armed: bool = False
    #: The stale watch runs (False after an interrupt until the turn ends, and while paused).
    watching: bool = True
    fast_streak: int = 0
    #: When Berth last started a manager turn (a delivery or a nudge); None: a user's turn.
    nudged_at: float | None = None
    paused: bool = False
    resume_at: float | None = None
    onboarding: Literal["new", "asked", "done"] = "new"
    preferences: Preferences | None = None
    serial: int = 0
    ended: bool = False

    @property
    def onboarding_question_id(self) -> str:
        return f"{self.manager_id}-onboarding"

    def child(self, child_id: str) -> Child | None:
        return next((c for c in self.children if c.id == child_id), None)


def rebased(state: ManagerState, shift: float) -> ManagerState:
    """The state on another monotonic clock (a restarted process's): its times moved by ``shift``.

    The children's last traffic, the start of a nudged turn and the resume-at
    are monotonic times; without this a restart would make every child look
    silent for as long as the two clocks differ."""
    return replace(
        state,
        children=tuple(replace(c, last_activity=c.last_activity + shift) for c in state.children),
        nudged_at=None if state.nudged_at is None else state.nudged_at + shift,
        resume_at=None if state.resume_at is None else state.resume_at + shift,
    )


def manager_info(state: ManagerState) -> ManagerInfo:
    return ManagerInfo(
        children=[ChildSummary(id=c.id, name=c.name, status=SessionStatus(c.status)) for c in state.children],
        step=state.step,
        paused=state.paused,
        resume_at=state.resume_at,
        pending_events=len(state.pending),
        configured=state.onboarding == "done",
    )


def continue_delay(streak: int, config: ManagerRules) -> float:
    backoff = (
        0.0
        if streak <= 0
        else min(config.manager_backoff_max, config.manager_backoff_base * 2 ** (streak - 1))
    )
    return max(config.manager_continue_delay, backoff)
