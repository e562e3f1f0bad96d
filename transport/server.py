"""Berth's server: REST on werkzeug's threads, every WebSocket on one I/O loop.

werkzeug's threaded server answers REST and routes and authenticates each
WebSocket upgrade on a request thread; after the 101 the socket is handed to
the I/O loop (``transport.ioloop``), which drives every agent and client
connection from one thread. Every connection is admitted against the
connection limits at ``accept`` and must finish its request within
``auth_timeout``. The server binds its port at construction, so the actor
tree can be started with the agents' URL before the server begins to serve.
``stop()`` closes every WebSocket, then stops accepting and the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from actors.api import Berth, BerthError
from actors.config import BerthConfig
from actors.secret import Secret
from transport import rest, web
from transport.admission import Admission, raise_fd_limit, refuse
from transport.agent_endpoint import serve_agent, serve_pooled_agent
from transport.agent_guard import AgentGuards
from transport.auth import bearer
from transport.client_endpoint import ClientSession
from transport.connection import Connection
from transport.http import error_response
from transport.ioloop import IOLoop
from transport.limits import Limits as InputLimits
from transport.scopes import FULL, Scope, refusal, scope_for
from transport.settings import ServerSettings
from transport.v1.app import SessionsApi
from transport.websocket import HandshakeFailed, Limits

log = logging.getLogger(__name__)

#: Workers for client subscriptions (they wait for the session's catch-up).
CLIENT_WORKERS = 4


class RequestHandler(WSGIRequestHandler):
    """No per-request log lines: they would sit on the relay path."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def run_wsgi(self) -> None:
        super().run_wsgi()
        if getattr(self, "environ", {}).get("berth.websocket"):
            # The socket now carries a WebSocket: what follows is not another HTTP request.
            self.close_connection = True


class _HTTPServer(ThreadedWSGIServer):
    """Counts every connection in at accept and out when werkzeug is done with it,
    unless the socket was handed to the I/O loop (which counts it out itself)."""

    admission: Admission
    _admitted: dict[int, str]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = _address(client_address)
        reason = self.admission.admit(address)
        if reason is None:
            self._admitted[id(request)] = address
            return True
        refuse(request, reason)
        return False

    def shutdown_request(self, request: Any) -> None:
        handed_over = request.fileno() == -1
        address = self._admitted.pop(id(request), None)
        super().shutdown_request(request)
        if address is not None and not handed_over:
            self.admission.release(address)


def _address(client_address: Any) -> str:
    return str(client_address[0]) if client_address else "?"


class _ConnectionRegistry:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: set[Connection] = set()

    def add(self, connection: Connection) -> None:
        with self._cond:
            self._open.add(connection)

    def discard(self, connection: Connection) -> None:
        with self._cond:
            self._open.discard(connection)
            self._cond.notify_all()

    def close_all(self, code: int, reason: str) -> None:
        """Send every peer a close frame and drop it once that is on the wire."""
        with self._cond:
            connections = list(self._open)
        for connection in connections:
            connection.close(code, reason)
            connection.ws.drop_when_flushed()

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def count(self) -> int:
        with self._cond:
            return len(self._open)


class BerthServer:
    def __init__(
        self, settings: ServerSettings, api_token: Secret, config: BerthConfig | None = None
    ) -> None:
        if not api_token.reveal():
            raise ValueError("the API token is empty: the server would accept anyone")
        self.settings = settings
        self.config = config or BerthConfig()
        self.limits = InputLimits.from_config(self.config)
        self._guards = AgentGuards(self.limits)
        self._api_token = api_token
        self._berth: Berth | None = None
        self.connections = _ConnectionRegistry()
        #: The sessions-and-events API under /v1/ (docs/sessions-api.md).
        self.sessions_api = SessionsApi(api_token)
        c = self.config
        raise_fd_limit(c.max_connections + 256)
        self.admission = Admission(c.max_connections, c.max_connections_per_address)
        handler = type("BerthRequestHandler", (RequestHandler,), {"timeout": c.auth_timeout})
        self._httpd = _HTTPServer(settings.host, settings.port, self._wsgi, handler=handler)
        self._httpd.admission = self.admission
        self._httpd._admitted = {}
        self._httpd.request_queue_size = 1024
        # serve_forever accepts after its select said "readable"; a connection
        # gone from the queue in between would block a blocking accept() for good,
        # and shutdown() with it. Non-blocking, that accept just finds nothing.
        self._httpd.socket.setblocking(False)
        self.port = self._httpd.server_port
        self._thread: threading.Thread | None = None
        self.loop = IOLoop()
        self.loop.start()
        self._pool = ThreadPoolExecutor(CLIENT_WORKERS, thread_name_prefix="berth-client")
        self._stopping = False

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}"

    def start(self, berth: Berth, config: BerthConfig | None = None) -> None:
        self.sessions_api.start(berth, config or self.config)
        self._berth = berth
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.2,), name="berth-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.sessions_api.stop()
        self._stopping = True
        self.connections.close_all(1001, "server shutting down")
        self.connections.wait_empty(self.config.close_timeout + 1)
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.loop.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ connections

    def _connect(self, environ: dict[str, Any], kind: str) -> Connection:
        """Answer the upgrade and hand the socket to the loop (a request thread)."""
        c = self.config
        if kind == "client":
            budget, frame_bytes = c.client_outbox_bytes, self.limits.client_frame_bytes
        else:
            budget, frame_bytes = c.agent_outbox_bytes, self.limits.agent_frame_bytes
        ping = self.settings.ping_interval
        limits = Limits(budget, frame_bytes, ping, c.close_timeout, c.ws_messages_per_turn)
        connection = Connection(environ, kind, self.loop, limits)
        environ["berth.websocket"] = True
        self.connections.add(connection)
        address = str(environ.get("REMOTE_ADDR", "?"))

        def closed(_reason: str) -> None:
            self.connections.discard(connection)
            self.admission.release(address)

        connection.on_close(closed)
        return connection

    # ------------------------------------------------------------ WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._respond(request, environ)
        except HandshakeFailed as exc:
            response = error_response(400, f"{exc}: connect with a WebSocket client")
        if response is None:
            # The socket belongs to the I/O loop now: tell werkzeug not to answer.
            raise ConnectionError("handed to the I/O loop")
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
        if berth is None or self._stopping:
            return error_response(503, "Berth is starting" if berth is None else "Berth is stopping")
        try:
            endpoint, args = rest.ROUTES.bind_to_environ(environ).match()
        except HTTPException as exc:
            return error_response(exc.code or 404, exc.description or "not found")
        if endpoint == "pool_agent_ws":
            pooled: Response | None = serve_pooled_agent(
                environ, berth, args["sid"], self._connect, self._guards
            )
            return pooled
        if endpoint == "agent_ws":
            refused: Response | None = serve_agent(environ, berth, args["sid"], self._connect, self._guards)
            return refused
        scope = FULL if endpoint == "health" else self._scope(request, berth)
        if scope is None:
            return error_response(401, "missing or wrong API token (Authorization: Bearer <token>)")
        denied = refusal(scope, endpoint, args.get("sid"), berth)
        if denied is not None:
            return error_response(403, denied)
        if endpoint == "client_ws":
            ClientSession(self._connect(environ, "client"), berth, self._pool, self.limits).start()
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
