"""Server-sent event streams: one long-lived HTTP response per ``events/stream`` call.

Each listed event is sent as ``event: <type>``, ``id: <event id>`` (what a
client gives back as ``Last-Event-ID``) and ``data: <json>``; previews carry
no ``id:``, so an EventSource's last id stays on the last listed event. A
quiet stream sends ``event: ping`` every ``sessions_api_keepalive`` seconds:
that write is how a client that went away is noticed, and its subscription
freed. At most ``sessions_api_max_streams`` streams are open at once (each
holds a server thread); one more is refused with 429. A stream the server
ends early (it stops, or the client fell too far behind) ends with an SSE
``error`` event, which the SDK raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import msgspec

from transport.v1.errors import ERROR_TYPES
from transport.v1.mapping import Body
from transport.v1.view import EventQueue, SessionsView, StreamEnded

PING = b'event: ping\ndata: {"type":"ping"}\n\n'
OPENED = b": berth sessions event stream\n\n"
_encoder = msgspec.json.Encoder()


def sse_frame(body: Body) -> bytes:
    kind = str(body["type"]).encode()
    head = b"event: " + kind + b"\n"
    if body["type"] not in ("event_start", "event_delta") and "id" in body:
        head += b"id: " + str(body["id"]).encode() + b"\n"
    return head + b"data: " + _encoder.encode(body) + b"\n\n"


def error_frame(status: int, message: str) -> bytes:
    """An SSE ``error`` event: the SDK raises it as an ``APIStatusError`` with this body."""
    body = {"type": "error", "error": {"type": ERROR_TYPES[status], "message": message}}
    return b"event: error\ndata: " + _encoder.encode(body) + b"\n\n"


class StreamSlots:
    """Counts open streams against the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open = 0

    def take(self) -> bool:
        with self._lock:
            if self._open >= self.limit:
                return False
            self._open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def open(self) -> int:
        with self._lock:
            return self._open


class EventStreamBody:
    """The response body of one stream; ``close()`` (WSGI) frees its subscription and slot."""

    def __init__(
        self,
        view: SessionsView,
        stream: EventQueue,
        slots: StreamSlots,
        keepalive: float,
        gone: Callable[[], Body | None],
    ) -> None:
        self._view, self._stream, self._slots = view, stream, slots
        self._keepalive = keepalive
        self._gone = gone
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        yield OPENED
        while True:
            try:
                body = self._stream.get(self._keepalive)
            except StreamEnded as ended:
                if ended.error:
                    yield error_frame(503, ended.why)
                return
            if body is None:
                deleted = self._gone()
                if deleted is not None:
                    yield sse_frame(deleted)
                    return
                yield PING
                continue
            yield sse_frame(body)
            if body["type"] == "session.deleted":
                return

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._view.unsubscribe(self._stream)
        self._slots.give_back()
