"""How the ``berth`` CLI talks to a running server: REST calls and the client WebSocket.

The server is found from ``--server``, ``BERTH_URL``, the URL a running
``berth serve`` leaves in the state dir, or the configured host and port, in
that order; the API token from ``BERTH_TOKEN`` or the state dir's
``api-token``. Failures are two exceptions the CLI maps to exit codes:
``Refused`` (the server said no: 1) and ``Unreachable`` (no server: 3).
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from actors.secret import Secret
from transport.auth import API_TOKEN_FILE
from transport.config_loader import Loaded

SERVER_URL_FILE = "server-url"


class Refused(Exception):
    """The server answered with an error; the message is what it said."""


class Unreachable(Exception):
    """No server answered at the URL."""


@dataclass(frozen=True)
class Target:
    url: str
    #: Where the URL came from (shown when the server cannot be reached).
    source: str
    token: Secret | None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"


def find_server(loaded: Loaded, given: str | None, environ: Mapping[str, str] | None = None) -> Target:
    environ = os.environ if environ is None else environ
    state = loaded.config.state_dir
    token_text = environ.get("BERTH_TOKEN") or _read(state / API_TOKEN_FILE)
    token = Secret(token_text) if token_text else None
    if given:
        return Target(given.rstrip("/"), "--server", token)
    if environ.get("BERTH_URL"):
        return Target(environ["BERTH_URL"].rstrip("/"), "BERTH_URL", token)
    recorded = _read(state / SERVER_URL_FILE)
    if recorded:
        return Target(recorded.rstrip("/"), f"{state / SERVER_URL_FILE}", token)
    host = loaded.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return Target(f"http://{host}:{loaded.server.port}", "the configured host and port", token)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.target.token is not None:
            headers["Authorization"] = f"Bearer {self.target.token.reveal()}"
        return headers

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.target.url + path, data=data, method=method, headers=self._headers()
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise Refused(self._refusal(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"cannot reach the Berth server at {self.target.url} (from {self.target.source}): {reason}; "
                "start one with `berth serve`, or point at one with --server or BERTH_URL"
            ) from None
        return json.loads(raw) if raw else None

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if exc.code == 401:
            return (
                f"{message}; the token comes from BERTH_TOKEN or the server's state dir "
                "(`berth serve` prints where it is kept)"
            )
        return f"{message} (HTTP {exc.code})"

    def sessions(self, ended: bool = True) -> list[dict[str, Any]]:
        """Listed sessions; with ``ended``, also evicted ones the server still keeps."""
        path = "/api/sessions?ended=true" if ended else "/api/sessions"
        return list(self.call("GET", path)["sessions"])

    def session(self, sid: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"/api/sessions/{sid}")
        return body

    def live(self) -> Live:
        return Live(self.target, self.timeout)


class Live:
    """One client WebSocket: JSON frames in and out."""

    def __init__(self, target: Target, timeout: float) -> None:
        headers = []
        if target.token is not None:
            headers.append(f"Authorization: Bearer {target.token.reveal()}")
        self._ids = itertools.count(1)
        try:
            self._ws = websocket.create_connection(target.ws_url, header=headers, timeout=timeout)
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code == 401:
                raise Refused("the server refused the API token (set BERTH_TOKEN)") from None
            raise Refused(f"the server refused the WebSocket (HTTP {exc.status_code})") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise Unreachable(f"cannot reach the Berth server at {target.ws_url}: {exc}") from None

    def send(self, frame: dict[str, Any], track: bool = False) -> str | None:
        request_id = None
        if track:
            request_id = f"cli-{next(self._ids)}"
            frame = {**frame, "requestId": request_id}
        try:
            self._ws.send(json.dumps(frame))
        except (OSError, websocket.WebSocketException) as exc:
            raise Unreachable(f"the connection to the server dropped: {exc}") from None
        return request_id

    def recv(self, timeout: float | None) -> dict[str, Any] | None:
        """The next frame; None when ``timeout`` passes. Unreachable when the connection drops."""
        self._ws.settimeout(timeout)
        try:
            data = self._ws.recv()
        except (TimeoutError, websocket.WebSocketTimeoutException):
            return None
        except (OSError, websocket.WebSocketException) as exc:
            raise Unreachable(f"the connection to the server dropped: {exc}") from None
        if not data:
            raise Unreachable("the server closed the connection")
        frame: dict[str, Any] = json.loads(data)
        return frame

    def fileno(self) -> int:
        sock = self._ws.sock
        if sock is None:
            raise Unreachable("the connection to the server is closed")
        return int(sock.fileno())

    def close(self) -> None:
        try:
            self._ws.close()
        except (OSError, websocket.WebSocketException):
            pass
