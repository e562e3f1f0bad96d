"""What the server accepts from an agent: frame rules and per-session frame and byte rates.

An agent is less trusted than a client: it runs next to code the model
wrote. Decoding (``transport.protocol``) already refuses negative or
non-finite costs and usage; this module adds the rules a schema cannot say
and a frame budget per session. Both are pure (no sockets, no sleeping), so
whatever reads agent sockets calls them with the bytes and the time:

    pause = guard.pause(time.monotonic(), len(data))   # seconds to wait before reading on
    frame = guard.check(data)                          # the frame, or FrameError

Over its budget an agent is slowed down, not cut off or dropped: the reader
waits ``pause`` seconds before it reads again, so TCP pushes back on the
agent, whose own outbox holds the frames meanwhile; nothing is lost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from transport.limits import Limits
from transport.protocol import (
    AgentToServer,
    FrameError,
    SdkMessage,
    SessionInfoUpdate,
    decode_agent_frame,
)

#: Sessions whose frame budgets are remembered (least recently seen dropped first).
MAX_TRACKED = 10_000


class FrameRate:
    """A token bucket: ``rate`` units (frames, or bytes) per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float, units: float = 1.0) -> float:
        """Spend ``units``; the seconds to wait first (0.0 within the budget)."""
        self._tokens = self._available(now) - units
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def has(self, now: float, units: float) -> bool:
        """Whether ``units`` can be spent now without waiting (nothing is spent)."""
        return self._available(now) >= units

    def _available(self, now: float) -> float:
        return min(self._burst, self._tokens + max(0.0, now - self._last) * self._rate)


class SessionRates:
    """A frame and a byte budget per session, kept across reconnects (a new
    connection does not get a fresh budget). Thread-safe."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._rates: OrderedDict[str, tuple[FrameRate, FrameRate]] = OrderedDict()

    def take(self, key: str, now: float, size: int = 0) -> float:
        """Spend one frame of ``size`` bytes; the seconds to wait first."""
        with self._lock:
            frames, data = self._rates_of(key, now)
            return max(frames.take(now), data.take(now, size))

    def take_all(self, key: str, now: float, count: int, size: int) -> bool:
        """Spend ``count`` frames of ``size`` bytes in all if both budgets have
        them now (one check per read, not per frame); False spends nothing."""
        with self._lock:
            frames, data = self._rates_of(key, now)
            if not (frames.has(now, count) and data.has(now, size)):
                return False
            frames.take(now, count)
            data.take(now, size)
            return True

    def _rates_of(self, key: str, now: float) -> tuple[FrameRate, FrameRate]:
        rates = self._rates.get(key)
        if rates is None:
            limits = self._limits
            rates = (
                FrameRate(limits.agent_frame_rate, limits.agent_frame_burst, now),
                FrameRate(limits.agent_byte_rate, limits.agent_byte_burst, now),
            )
            self._rates[key] = rates
            if len(self._rates) > MAX_TRACKED:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(key)
        return rates


def check_agent_frame(frame: AgentToServer, limits: Limits) -> None:
    """Raise FrameError if an agent may not send ``frame``.

    Called for every frame an agent sends, so it compares exact types (a
    ``match`` on class patterns cost 10 % of the relay of one-token frames)."""
    if type(frame) is SdkMessage:
        if frame.message.kind == "user":
            raise FrameError("agents may not author 'user' messages: the server records what the user sent")
    elif type(frame) is SessionInfoUpdate:
        model = frame.model
        if model is not None and len(model) > limits.model_chars:
            raise FrameError(f"model is {len(model)} characters long; the limit is {limits.model_chars}")


class AgentGuard:
    """The checks for one agent connection of session (or pool slot) ``key``."""

    def __init__(self, key: str, limits: Limits, rates: SessionRates) -> None:
        self._key = key
        self._limits = limits
        self._rates = rates

    def pause(self, now: float, size: int = 0) -> float:
        """Spend one frame of ``size`` bytes from the session's budgets; the seconds to wait first."""
        return self._rates.take(self._key, now, size)

    def pay_all(self, now: float, frames: list[str | bytes]) -> bool:
        """Spend the budgets of all ``frames`` at once if they have room now."""
        return self._rates.take_all(self._key, now, len(frames), sum(map(len, frames)))

    def check(self, data: str | bytes) -> AgentToServer:
        frame = decode_agent_frame(data)
        check_agent_frame(frame, self._limits)
        return frame


class AgentGuards:
    """Makes the guard of each agent connection; one per server."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._rates = SessionRates(limits)

    def for_key(self, key: str) -> AgentGuard:
        return AgentGuard(key, self.limits, self._rates)
