"""A real OAuth token endpoint on 127.0.0.1 for the token tests.

``OAuthServer`` is a threaded ``http.server`` answering the refresh-token
grant the way the Claude token endpoint does: a form-encoded POST in, JSON
``{access_token, refresh_token?, expires_in, token_type}`` out. It records
every request, can hold requests until released (``hold()``), fail the next
requests with a status (``fail_next``) or all of them (``fail_status``), and
rotates the refresh token when ``rotate`` is set. ``close()`` releases held
requests and joins every thread it started.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OLD_ACCESS = "sk-ant-oat01-old-access-token-ABCDEFGH"
OLD_REFRESH = "sk-ant-ort01-old-refresh-token-IJKLMNOP"


def write_credentials(
    claude_dir: Path,
    access: str = OLD_ACCESS,
    refresh: str | None = OLD_REFRESH,
    expires_at_ms: float | None = None,
    **extra: Any,
) -> Path:
    """A ``.credentials.json`` as the Claude CLI writes it, plus unrelated fields."""
    claude_dir.mkdir(parents=True, exist_ok=True)
    oauth: dict[str, Any] = {
        "accessToken": access,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }
    if refresh is not None:
        oauth["refreshToken"] = refresh
    if expires_at_ms is not None:
        oauth["expiresAt"] = int(expires_at_ms)
    path = claude_dir / ".credentials.json"
    path.write_text(json.dumps({"claudeAiOauth": oauth, **extra}, indent=2))
    path.chmod(0o600)
    return path


def now_ms() -> float:
    return time.time() * 1000


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: Mapping[str, str]
    form: Mapping[str, str]


class OAuthServer:
    def __init__(self, expires_in: int = 3600, rotate: bool = True) -> None:
        self.expires_in = expires_in
        self.rotate = rotate
        self.fail_status: int | None = None
        self.fail_body: str = json.dumps({"error": "server_error", "error_description": "try again"})
        self._fail_next: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._issued: list[tuple[str, str | None]] = []
        self._hold: threading.Event | None = None
        self._arrived = threading.Condition(self._lock)
        self._serial = itertools.count(1)
        self._released: list[threading.Event] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="oauth-test-server"
        )
        self._thread.start()

    # ------------------------------------------------------------ control

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/oauth/token"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def issued(self) -> list[tuple[str, str | None]]:
        """(access_token, refresh_token or None) of every successful answer, in order."""
        with self._lock:
            return list(self._issued)

    def hold(self) -> threading.Event:
        """Hold every request from now on until the returned event is set."""
        event = threading.Event()
        with self._lock:
            self._hold = event
            self._released.append(event)
        return event

    def fail_next(self, times: int = 1, status: int = 500, body: str | None = None) -> None:
        with self._lock:
            self._fail_next.extend([(status, body if body is not None else self.fail_body)] * times)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` requests have arrived (held ones included)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self._requests)} token requests, not {n}, after {timeout:g} s"
                    )
                self._arrived.wait(remaining)

    def close(self) -> None:
        with self._lock:
            for event in self._released:
                event.set()
        self._server.shutdown()
        self._server.server_close()  # joins the request threads
        self._thread.join(timeout=10)

    def __enter__(self) -> OAuthServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------ the endpoint

    def _answer(self, recorded: Recorded) -> tuple[int, str]:
        with self._arrived:
            self._requests.append(recorded)
            self._arrived.notify_all()
            hold = self._hold
        if hold is not None:
            hold.wait(timeout=30)
        with self._lock:
            if self._fail_next:
                return self._fail_next.pop(0)
            if self.fail_status is not None:
                return self.fail_status, self.fail_body
            form = recorded.form
            if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
                return 400, json.dumps({"error": "invalid_request"})
            n = next(self._serial)
            access = f"sk-ant-oat01-refreshed-{n:04d}-QRSTUVWXYZ"
            refresh = f"sk-ant-ort01-rotated-{n:04d}-abcdefghij" if self.rotate else None
            self._issued.append((access, refresh))
        payload: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }
        if refresh is not None:
            payload["refresh_token"] = refresh
        return 200, json.dumps(payload)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
                recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, form)
                status, text = server._answer(recorded)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: request lines are not test output."""

        return Handler
