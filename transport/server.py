"""Berth's thread-based server: REST, the client WebSocket and the agent WebSocket.

Werkzeug's threaded server gives each request (and so each WebSocket) its own
thread and hands simple-websocket the raw socket. The server binds its port at
construction, so the actor tree can be started with the agents' URL before
the server begins to serve. ``stop()`` closes every WebSocket, then stops
accepting and joins the serving thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from actors.api import Berth, BerthError
from actors.config import BerthConfig
from actors.secret import Secret
from transport import rest, web
from transport.agent_endpoint import serve_agent, serve_pooled_agent
from transport.agent_guard import AgentGuards
from transport.auth import bearer
from transport.client_endpoint import ClientSession
from transport.connection import Connection
from transport.http import error_response
from transport.limits import Limits
from transport.scopes import FULL, Scope, refusal, scope_for
from transport.settings import ServerSettings
from transport.v1.app import SessionsApi

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """No per-request log lines: they would sit on the relay path."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def run_wsgi(self) -> None:
        super().run_wsgi()
        if getattr(self, "environ", {}).get("berth.websocket"):
            # The socket carried a WebSocket: what follows is not another HTTP request.
            self.close_connection = True


class _ConnectionRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Connection] = set()

    def add(self, connection: Connection) -> None:
        with self._lock:
            self._open.add(connection)

    def discard(self, connection: Connection) -> None:
        with self._lock:
            self._open.discard(connection)

    def close_all(self, code: int, reason: str) -> list[Connection]:
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            connection.close(code, reason)
        return connections

    def count(self) -> int:
        with self._lock:
            return len(self._open)


class BerthServer:
    def __init__(self, settings: ServerSettings, api_token: Secret, limits: Limits) -> None:
        if not api_token.reveal():
            raise ValueError("the API token is empty: the server would accept anyone")
        self.settings = settings
        self.limits = limits
        self._guards = AgentGuards(limits)
        self._api_token = api_token
        self._berth: Berth | None = None
        self.connections = _ConnectionRegistry()
        #: The sessions-and-events API under /v1/ (docs/sessions-api.md).
        self.sessions_api = SessionsApi(api_token)
        self._httpd: BaseWSGIServer = make_server(
            settings.host, settings.port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._httpd.server_port
        self._thread: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}"

    def start(self, berth: Berth, config: BerthConfig | None = None) -> None:
        self.sessions_api.start(berth, config or BerthConfig())
        self._berth = berth
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="berth-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.sessions_api.stop()
        closing = self.connections.close_all(1001, "server shutting down")
        for connection in closing:
            connection.ws.flush(timeout=2)
            connection.stop_reading()
        for connection in closing:
            connection.ws.done.wait(timeout=5)
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ------------------------------------------------------------ WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request, environ)
        if response is None:
            environ["berth.websocket"] = True
            # The WebSocket is over and its socket closed: tell werkzeug not to answer.
            raise ConnectionError("websocket closed")
        return response(environ, start_response)

    def _respond(self, request: Request, environ: dict[str, Any]) -> Response | None:
        if request.path.startswith("/v1/"):
            if self._berth is not None and self._is_manager_token(request, self._berth):
                return error_response(403, "a manager token is scoped to its manager and children: not /v1/")
            return self.sessions_api.respond(request)
        static = web.page(request.path)
        if static is not None:
            return static
        berth = self._berth
        if berth is None:
            return error_response(503, "Berth is starting")
        try:
            endpoint, args = rest.ROUTES.bind_to_environ(environ).match()
        except HTTPException as exc:
            return error_response(exc.code or 404, exc.description or "not found")
        if endpoint == "pool_agent_ws":
            pooled: Response | None = serve_pooled_agent(
                environ, berth, args["sid"], self.settings, self.connections, self._guards
            )
            return pooled
        if endpoint == "agent_ws":
            refused: Response | None = serve_agent(
                environ, berth, args["sid"], self.settings, self.connections, self._guards
            )
            return refused
        scope = FULL if endpoint == "health" else self._scope(request, berth)
        if scope is None:
            return error_response(401, "missing or wrong API token (Authorization: Bearer <token>)")
        denied = refusal(scope, endpoint, args.get("sid"), berth)
        if denied is not None:
            return error_response(403, denied)
        if endpoint == "client_ws":
            self._serve_client(environ, berth)
            return None
        try:
            return rest.handle(berth, request, endpoint, args.get("sid"), self.limits, scope.manager_id)
        except BerthError as exc:
            return error_response(exc.code, str(exc))
        except rest.BadBody as exc:
            return error_response(400, str(exc))
        except rest.BodyTooLarge as exc:
            return rest.too_large_response(exc)

    def _is_manager_token(self, request: Request, berth: Berth) -> bool:
        scope = self._scope(request, berth)
        return scope is not None and scope.manager_id is not None

    def _scope(self, request: Request, berth: Berth) -> Scope | None:
        given = bearer(request.headers.get("Authorization")) or request.args.get("token")
        return scope_for(given, self._api_token, berth)

    def _serve_client(self, environ: dict[str, Any], berth: Berth) -> None:
        s = self.settings
        connection = Connection(
            environ, "client", s.client_outbox_limit, self.limits.client_frame_bytes, s.ping_interval
        )
        self.connections.add(connection)
        try:
            ClientSession(connection, berth, self.limits).run()
        finally:
            connection.finish()
            self.connections.discard(connection)
