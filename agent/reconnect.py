"""When to reconnect, how long to wait, and where to.

The server's close codes that mean "stop" (never reconnect) are
``STOP_CLOSE_CODES`` plus 1000 with reason "shutdown"; a handshake refused
with one of ``STOP_HTTP_STATUSES`` means the same as the matching code.
Everything else is retried with capped exponential backoff and full jitter,
so a fleet of agents that lost their server does not come back in lockstep.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from urllib.parse import quote

STOP_CLOSE_CODES: dict[int, str] = {
    4001: "authentication refused",
    4003: "replaced by a newer connection of this session",
    4004: "the session is over or unknown",
}
# Handshake refusals (before any WebSocket exists) that mean the same things.
STOP_HTTP_STATUSES: dict[int, int] = {401: 4001, 403: 4001, 404: 4004, 410: 4004}


@dataclass(frozen=True)
class CloseInfo:
    """How a connection ended: the close code (None if none) and reason."""

    code: int | None
    reason: str = ""

    @property
    def stops(self) -> bool:
        """Whether this close means the agent must not reconnect."""
        return self.code in STOP_CLOSE_CODES or (self.code == 1000 and self.reason == "shutdown")


def agent_url(server_url: str, session_id: str) -> str:
    return f"{server_url.rstrip('/')}/agent/{quote(session_id, safe='')}"


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**failures)]."""
    return random.uniform(0.0, min(cap, base * (2 ** min(failures, 32))))


def parse_close(data: bytes) -> CloseInfo:
    if len(data) < 2:
        return CloseInfo(None, "")
    (code,) = struct.unpack("!H", data[:2])
    return CloseInfo(code, data[2:].decode("utf-8", "replace"))
