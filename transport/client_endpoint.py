"""The client WebSocket: ``/ws``, subscribe to sessions and drive them.

On subscribe a client first gets a ``snapshot`` (or, resubscribing "since N",
exactly the events it missed), then live events, each with its session's
sequence number. Commands are answered with ``ack`` or ``protocol_error``
(echoing ``requestId``). A client whose outbox goes over its byte budget
is disconnected with close code 4008 and a reason; resubscribing catches it up.

Frames arrive on the I/O loop, which must never wait: session commands are
told from there at once; subscribing (it waits for the session's catch-up)
and creating a session (it waits for the supervisor) run on a small shared
pool of workers, in order per client (``Serial``): a command that follows
one of them waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from actors import messages as m
from actors.api import Berth, BerthError
from actors.outcome import Rejected
from transport import protocol as p
from transport.connection import Connection
from transport.limits import InputRefused, Limits
from transport.validate import check_client_frame

log = logging.getLogger(__name__)


class Serial:
    """Jobs run one after another, in order, on a shared pool of threads."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._jobs: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._running = False

    @property
    def busy(self) -> bool:
        return self._running

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._running:
                return
            self._running = True
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:
                log.exception("a client's job failed")


class ClientSession:
    def __init__(self, connection: Connection, berth: Berth, pool: Executor, limits: Limits) -> None:
        self._connection = connection
        self._berth = berth
        self._limits = limits
        self._serial = Serial(pool)
        self._subscriptions: dict[str, Callable[[], None]] = {}

    def start(self) -> None:
        self._berth.bus.subscribe(self._alerts)
        self._connection.on_close(lambda _reason: self._serial.submit(self._end))
        self._connection.start(self._frames)

    def _frames(self, messages: list[str | bytes]) -> None:
        for data in messages:
            if self._serial.busy:
                self._serial.submit(lambda data=data: self._handle(data))  # type: ignore[misc]
            else:
                self._handle(data)

    def _end(self) -> None:
        self._berth.bus.unsubscribe(self._alerts)
        for detach in self._subscriptions.values():
            detach()
        self._subscriptions.clear()

    def _alerts(self, event: Any) -> None:
        """Every client hears about the OAuth token (e.g. "re-authenticate")."""
        if isinstance(event, p.AuthAlert):
            self._connection.send(event)

    def _handle(self, data: str | bytes) -> None:
        try:
            frame = p.decode_client_frame(data)
        except p.FrameError as exc:
            self._connection.send(p.ProtocolError(message=str(exc)))
            return
        try:
            check_client_frame(frame, self._limits)
        except InputRefused as exc:
            self._refuse(frame, str(exc))
            return
        if isinstance(frame, p.CreateSessionFrame):
            create = frame
            self._serial.submit(lambda: self._create(create))  # it waits for the supervisor
            return
        command = _session_command(frame)
        if command is not None:
            self._berth.tell_command(frame.session_id, command, self._replier(frame))
            return
        session_frame = frame
        self._serial.submit(lambda: self._subscribe(session_frame))

    def _subscribe(self, frame: p.SessionFrame) -> None:
        if self._connection.closed:
            return
        try:
            self._subscription(frame)
        except BerthError as exc:
            self._reply(frame, Rejected(str(exc), exc.code))
            return
        self._reply(frame, None)

    def _refuse(self, frame: p.ClientToServer, reason: str) -> None:
        """A frame over a limit: a protocol_error that echoes no over-long id."""
        short = self._limits.id_chars
        sid = getattr(frame, "session_id", None)
        self._connection.send(
            p.ProtocolError(
                message=reason,
                session_id=sid if sid is not None and len(sid) <= short else None,
                request_id=frame.request_id if len(frame.request_id or "") <= short else None,
            )
        )

    def _create(self, frame: p.CreateSessionFrame) -> None:
        spec = {f: getattr(frame, f) for f in frame.__struct_fields__ if f != "request_id"}
        try:
            sid = self._berth.create_session(**spec)
        except BerthError as exc:
            self._connection.send(p.ProtocolError(message=str(exc), request_id=frame.request_id))
            return
        self._connection.send(p.Ack(request_id=frame.request_id, session_id=sid))

    def _replier(self, frame: p.SessionFrame) -> Callable[[Rejected | None], None]:
        return lambda outcome: self._reply(frame, outcome)

    def _reply(self, frame: p.SessionFrame, outcome: Rejected | None) -> None:
        if outcome is None:
            if frame.request_id is not None:  # acks only for clients that track requests
                self._connection.send(p.Ack(request_id=frame.request_id, session_id=frame.session_id))
        else:
            self._connection.send(
                p.ProtocolError(
                    message=outcome.reason, session_id=frame.session_id, request_id=frame.request_id
                )
            )

    def _subscription(self, frame: p.SessionFrame) -> None:
        sid = frame.session_id
        match frame:
            case p.ClientSubscribe(since=since):
                self._unsubscribe(sid)
                self._subscriptions[sid] = self._berth.attach_sink(sid, self._sink, since)
            case p.ClientUnsubscribe():
                self._unsubscribe(sid)

    def _unsubscribe(self, sid: str) -> None:
        detach = self._subscriptions.pop(sid, None)
        if detach is not None:
            detach()

    def _sink(self, event: Any) -> None:
        """Runs on a session's actor thread: enqueue and return."""
        if not self._connection.send(event) and not self._connection.closed:
            self._connection.close_over_budget(
                "client fell too far behind (outbox over its byte budget); reconnect and resubscribe "
                "with since to catch up"
            )


def _session_command(frame: p.SessionFrame) -> Any | None:
    """The session actor's command for a client frame (None: not a session command)."""
    match frame:
        case p.SendPrompt(content=content):
            return m.SendUserMessage(content)
        case p.ApproveTool(approval_id=approval_id, allow=allow, message=message):
            return m.AnswerApproval(approval_id, allow, message)
        case p.AnswerQuestionFrame(question_id=question_id, answers=answers):
            return m.AnswerQuestion(question_id, answers)
        case p.InterruptSession():
            return m.InterruptTurn()
        case p.UpdateSessionSettings(name=name, permission_mode=mode):
            return m.ChangeSettings(name, mode)
        case p.SetSessionModel(model=model):
            return m.ChangeModel(model)
        case p.GetSessionModels():
            return m.RequestModels()
    return None
