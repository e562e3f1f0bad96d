"""The agent WebSocket: ``/agent/<session id>``, authenticated at the upgrade.

A wrong or missing session token is refused with 401 before any session state
is touched. Each accepted connection becomes an ``AgentLink`` for the session
actor; its frames are validated and told to the actor, a malformed frame is
answered with a ``protocol_error`` and the connection stays up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.api import Berth, BerthError
from actors.messages import AgentAttached, AgentDetached, FromAgent, PoolAgentAttached, SessionEntry
from transport.agent_guard import AgentGuards
from transport.auth import bearer, matches
from transport.connection import Connection
from transport.http import error_response
from transport.protocol import FrameError, LinkResume, ProtocolError, ServerToAgent
from transport.settings import ServerSettings

log = logging.getLogger(__name__)


class AgentConnection:
    """What a SessionActor holds of its agent: sends never block it."""

    def __init__(self, connection: Connection, epoch: str = "") -> None:
        self._connection = connection
        #: Which agent process this is (``X-Berth-Link``): its frames are numbered from 1.
        self.epoch = epoch

    @property
    def link_id(self) -> str:
        return self._connection.id

    def send(self, frame: ServerToAgent) -> None:
        if not self._connection.send(frame):
            self._connection.close(4008, "agent fell too far behind")

    def close(self, code: int, reason: str) -> None:
        self._connection.close(code, reason)


def serve_agent(
    environ: dict[str, Any],
    berth: Berth,
    session_id: str,
    settings: ServerSettings,
    registry: Any,
    guards: AgentGuards,
) -> Any:
    try:
        entry = berth.lookup(session_id)
    except BerthError:
        return error_response(404, "no such session")
    return _serve(environ, entry, AgentAttached, settings, registry, guards)


def serve_pooled_agent(
    environ: dict[str, Any],
    berth: Berth,
    slot: str,
    settings: ServerSettings,
    registry: Any,
    guards: AgentGuards,
) -> Any:
    """A pre-started agent waiting in the warm pool for its ``assign`` frame."""
    entry = berth.pool_directory.get(slot)
    if entry is None:
        return error_response(404, "no such pool slot")
    # A pooled agent's frames are not kept past its assignment: it may send at once (issue 9).
    return _serve(
        environ,
        entry,
        lambda link: PoolAgentAttached(slot, link),
        settings,
        registry,
        guards,
        LinkResume(received=0),
    )


def _serve(
    environ: dict[str, Any],
    entry: SessionEntry,
    attached: Callable[[AgentConnection], Any],
    settings: ServerSettings,
    registry: Any,
    guards: AgentGuards,
    greeting: LinkResume | None = None,
) -> Any:
    if not matches(bearer(environ.get("HTTP_AUTHORIZATION")), entry.agent_token):
        return error_response(401, "wrong or missing session token")
    if entry.ref is None:
        return error_response(410, f"session {entry.session_id} has ended")
    ref = entry.ref
    connection = Connection(
        environ,
        "agent",
        settings.agent_outbox_limit,
        guards.limits.agent_frame_bytes,
        settings.ping_interval,
    )
    registry.add(connection)
    link = AgentConnection(connection, environ.get("HTTP_X_BERTH_LINK", ""))
    if greeting is not None:
        connection.send(greeting)
    guard = guards.for_key(entry.session_id)
    try:
        ref.tell(attached(link))
        for data in connection.frames():
            pause = guard.pause(time.monotonic())
            if pause:  # over its frame budget: read on later (TCP holds the agent back)
                connection.stopping.wait(pause)
            try:
                frame = guard.check(data)
            except FrameError as exc:
                connection.send(ProtocolError(message=str(exc), session_id=entry.session_id))
                continue
            ref.tell(FromAgent(link.link_id, frame))
    except pykka.ActorDeadError:
        connection.close(4004, "session is over")
    finally:
        try:
            ref.tell(AgentDetached(link.link_id, connection.close_reason))
        except pykka.ActorDeadError:
            pass
        connection.finish()
        registry.discard(connection)
    return None
