"""The server's own settings (the actor tree has ``BerthConfig``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    #: Frames queued for one client before it is cut off as too slow.
    client_outbox_limit: int = 20_000
    agent_outbox_limit: int = 20_000
    max_message_size: int = 8 * 1024 * 1024
    #: Seconds between pings that detect dead peers; None disables them.
    ping_interval: float | None = 20.0
