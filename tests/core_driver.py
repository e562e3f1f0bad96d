"""Drive the pure session core as its actor would, with a fake clock.

``CoreDriver`` keeps one session's state, feeds it messages at a given time,
and plays the shell's part for timers (arming, cancelling, firing in
deadline order) so that tests of the pure rules see exactly what the real
actor would do, without threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors import effects as fx
from actors import messages as m
from actors.config import BerthConfig
from actors.session_core import start, step
from actors.session_state import Instant, SessionRules, SessionState, new_session

WALL_OFFSET = 1_800_000_000.0 - 1000.0


@dataclass
class CoreDriver:
    state: SessionState
    now: float = 1000.0
    effects: list[fx.Effect] = field(default_factory=list)
    #: The shell's view of the armed timers: name -> (deadline, message).
    armed: dict[str, tuple[float, Any]] = field(default_factory=dict)
    #: Wall time minus clock time (another process, after a restart, has another).
    wall_offset: float = WALL_OFFSET

    @classmethod
    def create(
        cls,
        config: BerthConfig | None = None,
        spec: m.SessionSpec | None = None,
        *,
        pool: bool = False,
        session_id: str = "s0000000000000001",
        now: float = 1000.0,
    ) -> CoreDriver:
        config = config or BerthConfig()
        spec = spec or m.SessionSpec()
        rules = SessionRules.of(config, spec, use_pool=pool)
        driver = cls(new_session(session_id, spec, rules, Instant(now, now + WALL_OFFSET)), now=now)
        driver._take(start(driver.state, driver.instant()))
        return driver

    def instant(self) -> Instant:
        return Instant(self.now, self.now + self.wall_offset)

    def send(self, message: Any) -> tuple[fx.Effect, ...]:
        """One message now; returns that step's effects."""
        return self._take(step(self.state, message, self.instant()))

    def advance(self, seconds: float) -> list[fx.Effect]:
        """Move time on, firing each armed timer at its deadline, in order."""
        target = self.now + seconds
        produced: list[fx.Effect] = []
        while True:
            due = [(deadline, name) for name, (deadline, _) in self.armed.items() if deadline <= target]
            if not due:
                break
            deadline, name = min(due)
            self.now = max(self.now, deadline)
            _, message = self.armed.pop(name)
            produced.extend(self.send(message))
        self.now = target
        return produced

    def _take(self, result: tuple[SessionState, tuple[fx.Effect, ...]]) -> tuple[fx.Effect, ...]:
        self.state, effects = result
        for effect in effects:
            match effect:
                case fx.StartTimer(name=name, delay=delay, message=message):
                    self.armed[name] = (self.now + delay, message)
                case fx.CancelTimer(name=name):
                    self.armed.pop(name, None)
                case fx.StopActor():
                    self.armed.clear()
        self.effects.extend(effects)
        return effects

    # ------------------------------------------------------------ readings

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]

    def events(self, kind: type) -> list[Any]:
        return [e.event for e in self.of(fx.Publish) if isinstance(e.event, kind)]

    def texts(self) -> list[str]:
        return [e.message.content for e in self.of(fx.RecordMessage)]

    @property
    def status(self) -> str:
        return self.state.info.status.value
