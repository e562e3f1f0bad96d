"""A real WebSocket server on 127.0.0.1 standing in for Berth's agent endpoint.

werkzeug's threaded server plus ``simple_websocket.Server.accept`` (what the
real server uses), with knobs for the failures the agent must survive:
refusing the handshake, closing with a chosen code, dropping the socket, and
going away entirely and coming back on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import simple_websocket
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.ports import free_port
from transport.protocol import LinkAck, LinkResume, encode


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class ServerConn:
    """One accepted agent connection, as the server sees it."""

    def __init__(self, ws: Any, path: str, authorization: str | None) -> None:
        self.ws = ws
        self.path = path
        self.authorization = authorization
        #: The agent's ``X-Berth-Received`` upgrade header: the server frames it has.
        self.hello_received: str | None = None
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = threading.Event()
        self._cond = threading.Condition()

    def add(self, data: str | bytes) -> None:
        with self._cond:
            self.received.append(json.loads(data))
            self._cond.notify_all()

    def send(self, frame: msgspec.Struct | dict[str, Any] | str) -> None:
        if isinstance(frame, msgspec.Struct):
            self.ws.send(encode(frame))
        elif isinstance(frame, dict):
            self.ws.send(json.dumps(frame))
        else:
            self.ws.send(frame)

    def close(self, code: int, reason: str = "") -> None:
        self.ws.close(code, reason)

    def drop(self) -> None:
        """Cut the TCP connection without a close frame."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [f for f in self.received if f.get("type") == kind]

    def wait_for(
        self, kind: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True, timeout: float = 5.0
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def match() -> bool:
            found[:] = [f for f in self.received if f.get("type") == kind and predicate(f)][:1]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(match, timeout):
                raise AssertionError(f"no {kind} frame within {timeout}s; got {self.received!r}")
        return found[0]

    def wait_count(self, kind: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len([f for f in self.received if f.get("type") == kind]) >= count, timeout
            )
            frames = [f for f in self.received if f.get("type") == kind]
        assert ok, f"only {len(frames)} of {count} {kind} frames within {timeout}s"
        return frames


class AgentServer:
    """The test server; ``connections`` lists every accepted connection in order."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.connections: list[ServerConn] = []
        self.handshakes = 0
        self.reject_status: int | None = None
        self.on_connect: Callable[[ServerConn], None] | None = None
        #: The highest link number received (over every connection), as Berth keeps it.
        self.link_received = 0
        #: Like Berth: say link_resume on connect and acknowledge every frame.
        self.link_protocol = True
        #: False: take frames but hold their link_ack back (a server busy storing them).
        self.ack_frames = True
        self._cond = threading.Condition()
        self._httpd: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> AgentServer:
        self._httpd = make_server(
            "127.0.0.1", self.port, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every live connection."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for conn in list(self.connections):
            conn.drop()
        for conn in list(self.connections):
            conn.closed.wait(5)

    def wait_connection(self, index: int, timeout: float = 5.0) -> ServerConn:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) > index, timeout):
                raise AssertionError(f"connection {index} did not arrive within {timeout}s")
            return self.connections[index]

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._cond:
            self.handshakes += 1
            self._cond.notify_all()
        if self.reject_status is not None:
            start_response(f"{self.reject_status} Refused", [("Content-Length", "0")])
            return [b""]
        ws = simple_websocket.Server.accept(environ)
        conn = ServerConn(ws, environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION"))
        conn.hello_received = environ.get("HTTP_X_BERTH_RECEIVED")
        with self._cond:
            self.connections.append(conn)
            self._cond.notify_all()
        if self.link_protocol:
            conn.send(LinkResume(received=self.link_received))
        if self.on_connect is not None:
            self.on_connect(conn)
        try:
            while True:
                data = ws.receive(timeout=1.0)
                if data is not None:
                    n = int(json.loads(data).get("n") or 0)
                    if self.link_protocol and n:
                        if n <= self.link_received:
                            continue  # a resend of what we have
                        self.link_received = n
                    conn.add(data)
                    if self.link_protocol and n and self.ack_frames:
                        try:
                            conn.send(LinkAck(received=n))
                        except simple_websocket.ConnectionClosed:
                            pass
                elif not ws.connected:
                    break
        except simple_websocket.ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_reason
            conn.closed.set()
        raise ConnectionError("websocket finished")  # tells werkzeug not to write a response
