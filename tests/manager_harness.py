"""Drives the pure manager core the way its actor does, on a manual time line.

``StartTimer``/``CancelTimer`` effects keep a table of armed timers (a
replaced or cancelled timer never fires, as with the actor's generations);
``advance`` fires the due ones in deadline order, each at its exact time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.config import BerthConfig
from actors.effects import CancelTimer, Effect, StartTimer, ToAgent
from actors.manager_core import step_manager
from actors.manager_events import ChildStarted, ManagerInput, ManagerReady, OnboardingAnswered
from actors.manager_onboarding import EXPLORE_Q
from actors.manager_rules import ManagerRules
from actors.manager_state import ManagerState
from transport.protocol import UserMessage


@dataclass
class Sent:
    at: float
    content: str


@dataclass
class Harness:
    config: ManagerRules = field(default_factory=lambda: ManagerRules.of(BerthConfig()))
    now: float = 1_000_000.0
    state: ManagerState = field(default_factory=lambda: ManagerState("mgr"))
    timers: dict[str, tuple[float, Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def feed(self, event: ManagerInput) -> list[Effect]:
        self.state, effects = step_manager(self.state, event, self.now, self.config)
        for effect in effects:
            match effect:
                case StartTimer(name=name, delay=delay, message=message):
                    self.timers[name] = (self.now + delay, message)
                case CancelTimer(name=name):
                    self.timers.pop(name, None)
                case ToAgent(frame=UserMessage(content=content)):
                    self.sent.append(Sent(self.now, content))
        self.effects.extend(effects)
        return effects

    def advance(self, seconds: float) -> None:
        """Move time on, firing due timers in deadline order, each at its deadline."""
        end = self.now + seconds
        while True:
            due = [(deadline, name) for name, (deadline, _) in self.timers.items() if deadline <= end + 1e-9]
            if not due:
                break
            deadline, name = min(due)
            self.now = max(self.now, deadline)
            _, message = self.timers.pop(name)
            self.feed(message)
        self.now = end

    def sent_at(self) -> list[float]:
        return [round(s.at - 1_000_000.0, 6) for s in self.sent]

    def onboarded(self, answers: dict[str, str] | None = None) -> None:
        """Ready, configured, and the first prompt's turn over: an idle manager."""
        from actors.manager_events import ManagerTurnEnded

        self.feed(ManagerReady())
        self.feed(OnboardingAnswered(answers or {EXPLORE_Q: "Explore"}))
        self.feed(ManagerTurnEnded(output_tokens=500))
        self.sent.clear()
        self.timers.pop("manager-continue", None)
        self.state = _replace(self.state, continue_armed=False)

    def child(self, child_id: str, name: str | None = None) -> None:
        self.feed(ChildStarted(child_id, name or child_id))


def _replace(state: ManagerState, **changes: Any) -> ManagerState:
    import dataclasses

    return dataclasses.replace(state, **changes)
