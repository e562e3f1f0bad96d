"""The agent WebSocket: ``/agent/<session id>``, authenticated at the upgrade.

A wrong or missing session token is refused with 401 before any session state
is touched. Each accepted connection becomes an ``AgentLink`` for the session
actor. The frames one read brought are decoded on the I/O loop and told to
the actor as ONE message (``FromAgentBatch``), consecutive ``stream`` frames
of one message merged into one: the actor's mailbox hand-off and the
client's frame are paid per read, not per token. A malformed frame is
answered with a ``protocol_error`` and the connection stays up.

Two things stop the loop reading an agent for a while (its TCP window then
fills, and the agent's own outbox holds what it sends, nothing is lost): the
session's frame and byte budgets (``transport.agent_guard``), and its
mailbox: while more than ``agent_mailbox_backlog`` messages wait there, the
session is behind its agent, and reading on would only pile the agent's
frames up in the server's memory and spend the loop parsing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.api import Berth, BerthError
from actors.messages import AgentAttached, AgentDetached, FromAgentBatch, PoolAgentAttached, SessionEntry
from transport.agent_guard import AgentGuards
from transport.auth import bearer, matches
from transport.connection import Connection
from transport.http import error_response
from transport.protocol import AgentToServer, FrameError, LinkResume, ProtocolError, ServerToAgent, Stream

log = logging.getLogger(__name__)

ConnectionFactory = Callable[[dict[str, Any], str], Connection]


class AgentConnection:
    """What a SessionActor holds of its agent: sends never block or raise."""

    def __init__(self, connection: Connection, epoch: str = "", received: int = 0) -> None:
        self._connection = connection
        #: Which agent process this is (``X-Berth-Link``): its frames are numbered from 1.
        self.epoch = epoch
        #: The highest numbered server frame the agent has (``X-Berth-Received``): the rest is resent.
        self.received = received

    @property
    def link_id(self) -> str:
        return self._connection.id

    def send(self, frame: ServerToAgent) -> None:
        if not self._connection.send(frame) and not self._connection.closed:
            self._connection.close_over_budget("agent fell too far behind (outbox over its byte budget)")

    def close(self, code: int, reason: str) -> None:
        self._connection.close(code, reason)


def serve_agent(
    environ: dict[str, Any], berth: Berth, session_id: str, connect: ConnectionFactory, guards: AgentGuards
) -> Any:
    try:
        entry = berth.lookup_for_agent(session_id)
    except BerthError:
        return error_response(404, "no such session")
    return _serve(environ, entry, AgentAttached, connect, guards)


def serve_pooled_agent(
    environ: dict[str, Any], berth: Berth, slot: str, connect: ConnectionFactory, guards: AgentGuards
) -> Any:
    """A pre-started agent waiting in the warm pool for its ``assign`` frame."""
    entry = berth.pool_directory.get(slot)
    if entry is None:
        return error_response(404, "no such pool slot")
    # A pooled agent's frames are not kept past its assignment: it may send at once (issue 9).
    greeting = LinkResume(received=0)
    return _serve(environ, entry, lambda link: PoolAgentAttached(slot, link), connect, guards, greeting)


def _serve(
    environ: dict[str, Any],
    entry: SessionEntry,
    attached: Callable[[AgentConnection], Any],
    connect: ConnectionFactory,
    guards: AgentGuards,
    greeting: LinkResume | None = None,
) -> Any:
    if not matches(bearer(environ.get("HTTP_AUTHORIZATION")), entry.agent_token):
        return error_response(401, "wrong or missing session token")
    if entry.ref is None:
        return error_response(410, f"session {entry.session_id} has ended")
    received = _received(environ.get("HTTP_X_BERTH_RECEIVED", "0"))
    if received is None:
        return error_response(
            400, "X-Berth-Received must be the highest link number received from the server (0 or more)"
        )
    ref = entry.ref
    connection = connect(environ, "agent")
    link = AgentConnection(connection, environ.get("HTTP_X_BERTH_LINK", ""), received)
    if greeting is not None:
        connection.send(greeting)
    sid = entry.session_id
    guard = guards.for_key(sid)

    held: list[str | bytes] = []  # frames over the session's budgets, read but not yet let in
    prepaid = [False]
    mailbox = getattr(ref, "actor_inbox", None)
    backlog, poll = guards.limits.agent_mailbox_backlog, guards.limits.agent_backlog_poll

    def behind() -> bool:
        return mailbox is not None and mailbox.qsize() > backlog

    def on_messages(messages: list[str | bytes]) -> None:
        if behind():  # hold what was read; read nothing more until the session caught up
            held.extend(messages)
            connection.ws.pause_reading(poll, lambda: on_messages([]))
            return
        queue = [*held, *messages]
        held.clear()
        batch = _Batch()
        now = time.monotonic()
        wait = 0.0
        paid = guard.pay_all(now, queue[1:] if prepaid[0] else queue)  # the usual case: all fit
        for i, data in enumerate(queue):
            wait = 0.0 if paid or (i == 0 and prepaid[0]) else guard.pause(now, len(data))
            prepaid[0] = False
            if wait > 0:  # over its budget: the rest waits, and the socket is not read meanwhile
                held.extend(queue[i:])
                prepaid[0] = True  # this frame's share of the budget is already taken
                break
            try:
                frame = guard.check(data)
            except FrameError as exc:
                connection.send(ProtocolError(message=str(exc), session_id=sid))
                continue
            batch.add(frame)
        frames = batch.frames()
        if frames:
            _tell(FromAgentBatch(link.link_id, frames))
        if wait > 0:
            connection.ws.pause_reading(wait, lambda: on_messages([]))
        elif behind():
            connection.ws.pause_reading(poll, lambda: on_messages([]))

    def on_closed(reason: str) -> None:
        _tell(AgentDetached(link.link_id, reason))

    def _tell(message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            connection.close(4004, "session is over")

    connection.on_close(on_closed)
    _tell(attached(link))  # before the loop may read (and tell) the first frame
    connection.start(on_messages)
    return None


def _received(header: str) -> int | None:
    """The agent's ``X-Berth-Received``, or None when it is not a link number."""
    value = header.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


class _Batch:
    """The frames of one read; consecutive tokens of one streamed message
    travel on as one ``stream`` (collected in one list: linear in the tokens)."""

    def __init__(self) -> None:
        self._frames: list[AgentToServer] = []
        self._stream_id: str | None = None
        self._tokens: list[str] = []
        self._last_n = 0  # the merged frame takes the link number of its last part

    def add(self, frame: AgentToServer) -> None:
        if isinstance(frame, Stream):
            if frame.message_id != self._stream_id:
                self._end_stream()
                self._stream_id = frame.message_id
            self._tokens.extend(frame.tokens)
            self._last_n = frame.n
            return
        self._end_stream()
        self._frames.append(frame)

    def frames(self) -> tuple[AgentToServer, ...]:
        self._end_stream()
        return tuple(self._frames)

    def _end_stream(self) -> None:
        if self._stream_id is not None:
            self._frames.append(Stream(message_id=self._stream_id, tokens=self._tokens, n=self._last_n))
            self._stream_id, self._tokens, self._last_n = None, [], 0
