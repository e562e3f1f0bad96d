"""The server's own settings (the actor tree has ``BerthConfig``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    #: Seconds of a peer's silence before the server pings it (a peer silent for
    #: another interval is dropped); None disables pings. 45 s stays under the 60 s
    #: idle timeout of common proxies and costs 10,000 idle peers ~220 pings a second.
    ping_interval: float | None = 45.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535 (0 picks a free port)")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be > 0 seconds, or empty for no pings")


@dataclass(frozen=True)
class ClientSettings:
    """The ``berth`` CLI's own knobs when it talks to a server."""

    #: Seconds one REST call or WebSocket handshake may take.
    request_timeout: float = 30.0
    #: The longest pause between attempts to reconnect a live view.
    reconnect_delay_max: float = 5.0
    #: A live view that cannot reconnect for this long gives up (exit 3).
    reconnect_give_up: float = 300.0
