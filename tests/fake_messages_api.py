"""A small fake of the Anthropic Messages API on 127.0.0.1, for driving the real Claude Code CLI.

``POST /v1/messages`` answers with a scripted reply, streamed as server-sent
events (``message_start``, ``content_block_start``, ``content_block_delta``
with ``text_delta`` or ``input_json_delta``, ``content_block_stop``,
``message_delta``, ``message_stop``) when the request says ``stream: true``,
or as one JSON message otherwise. Every request is recorded with its
headers, so a test can see which credential the CLI sent
(``Authorization: Bearer …`` for an OAuth token, ``x-api-key`` for an API
key). Other requests get a harmless answer (``count_tokens`` a count,
``HEAD`` 200, anything else a 404 error body) and are recorded too.

Replies are chosen without per-test state machines: the reply for a request
is found from the conversation it carries. ``script(trigger, *replies)``
gives the replies for a user prompt containing ``trigger``: the first
request after that prompt gets ``replies[0]``; after the CLI sent back a
tool result, ``replies[1]``; and so on. A prompt nobody scripted gets
``You said: <prompt>``. ``reject(token)`` makes every request carrying that
credential fail with 401 ``authentication_error``, as the real API does for
an expired or revoked access token (``on_reject`` runs before that 401 is
sent). Like the real API, a Bearer token sent without the OAuth beta
(``anthropic-beta: oauth-2025-04-20``) and without ``x-api-key`` is refused
with 401 too (``require_oauth_beta``).

With ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` the Claude Code CLI
(2.1.330) sends nothing but ``POST /v1/messages?beta=true`` here; without it
it also sends ``HEAD /api/hello`` (answered 200) and looks up other hosts.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "claude-sonnet-4-5-20250929"
OAUTH_BETA = "oauth-2025-04-20"


@dataclass(frozen=True)
class Reply:
    """One assistant message: text and/or one tool use, or an HTTP error."""

    text: str | None = None
    tool: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)
    chunks: int = 3
    status: int = 200
    error_type: str = ""

    @staticmethod
    def say(text: str, chunks: int = 3) -> Reply:
        return Reply(text=text, chunks=chunks)

    @staticmethod
    def use(tool: str, tool_input: dict[str, Any], text: str | None = None) -> Reply:
        return Reply(text=text, tool=tool, tool_input=tool_input)

    @staticmethod
    def fail(status: int, error_type: str, message: str) -> Reply:
        return Reply(text=message, status=status, error_type=error_type)


@dataclass(frozen=True)
class Request:
    """One request as the fake API saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None

    @property
    def betas(self) -> list[str]:
        return [b.strip() for b in self.headers.get("anthropic-beta", "").split(",") if b.strip()]

    @property
    def is_bare_bearer(self) -> bool:
        """A Bearer credential with neither ``x-api-key`` nor the OAuth beta."""
        return bool(self.bearer) and not self.api_key and OAUTH_BETA not in self.betas

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-api-key")

    @property
    def prompt(self) -> str:
        """The last user prompt this request carries ("" for a side request)."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return _prompt_and_step(messages or [])[0]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the request's last message."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        if not messages:
            return []
        return [b for b in _blocks(messages[-1].get("content")) if b.get("type") == "tool_result"]

    @property
    def is_conversation(self) -> bool:
        """A request of the main conversation (it offers tools), not a side query."""
        path = self.path.split("?", 1)[0]
        return path == "/v1/messages" and isinstance(self.body, dict) and bool(self.body.get("tools"))


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _prompt_and_step(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The last user prompt (text, not a tool result) and how many assistant
    messages came after it: which reply of that prompt's script is due."""
    step = 0
    for message in reversed(messages):
        blocks = _blocks(message.get("content"))
        if message.get("role") == "assistant":
            step += 1
            continue
        if message.get("role") != "user":
            continue  # the CLI's own "system" messages (environment, reminders)
        texts = [
            b["text"]
            for b in blocks
            if b.get("type") == "text" and not str(b.get("text", "")).lstrip().startswith("<system-reminder>")
        ]
        if texts and not any(b.get("type") == "tool_result" for b in blocks):
            return texts[-1], step
    return "", step


def _split(text: str, parts: int) -> list[str]:
    parts = max(1, min(parts, len(text) or 1))
    size = -(-len(text) // parts) if text else 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeMessagesApi:
    """``with FakeMessagesApi() as api:`` serves on ``api.url`` until the block ends."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_delay: float = 0.0,
        require_oauth_beta: bool = True,
    ) -> None:
        self.requests: list[Request] = []
        self.message_ids: list[str] = []  # of every message sent, in order
        self.token_delay = token_delay
        self.require_oauth_beta = require_oauth_beta
        self._scripts: list[tuple[str, list[Reply]]] = []
        self._rejected: set[str] = set()
        self._failures: list[tuple[str, list[Reply]]] = []
        self.on_reject: Callable[[Request], None] | None = None
        self._cond = threading.Condition()
        api = self

        class Handler(_Handler):
            owner = api

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMessagesApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeMessagesApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    def script(self, trigger: str, *replies: Reply) -> None:
        """Replies for a prompt containing ``trigger``, one per API round trip."""
        with self._cond:
            self._scripts.append((trigger, list(replies)))

    def fail_next(self, trigger: str, *failures: Reply) -> None:
        """The next requests for a prompt containing ``trigger`` get these (error)
        replies first, one each, before its script goes on: what a retry sees."""
        with self._cond:
            self._failures.append((trigger, list(failures)))

    def reject(self, credential: str) -> None:
        """Answer 401 to every request that carries ``credential``."""
        with self._cond:
            self._rejected.add(credential)

    # ------------------------------------------------------------ inspection

    def snapshot(self) -> list[Request]:
        with self._cond:
            return list(self.requests)

    def conversation(self) -> list[Request]:
        return [r for r in self.snapshot() if r.is_conversation]

    def wait_for(
        self, predicate: Callable[[Request], bool], timeout: float, what: str = "a request"
    ) -> Request:
        found: list[Request] = []

        def match() -> bool:
            found[:] = [r for r in self.requests if predicate(r)][:1]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(match, timeout):
                seen = [(r.method, r.path) for r in self.requests]
                raise AssertionError(f"no {what} within {timeout}s; requests so far: {seen}")
        return found[0]

    # ------------------------------------------------------------ internals

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _is_rejected(self, request: Request) -> bool:
        with self._cond:
            return bool({request.bearer, request.api_key} & self._rejected)

    def _reply_for(self, body: dict[str, Any]) -> Reply:
        prompt, step = _prompt_and_step(body.get("messages") or [])
        with self._cond:
            for trigger, failures in self._failures:
                if trigger in prompt and failures:
                    return failures.pop(0)
            for trigger, replies in self._scripts:
                if trigger in prompt:
                    if step < len(replies):
                        return replies[step]
                    return Reply.say("(no more scripted replies)")
        return Reply.say(f"You said: {prompt}")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeMessagesApi
    protocol_version = "HTTP/1.1"
    # Each SSE event is its own small write: with Nagle's algorithm on, one
    # waits for the client's delayed ACK (~40 ms) on a kept-alive connection.
    # A real API server sends at once; so does this one.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _record(self, body: Any) -> Request:
        request = Request(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        self.owner._record(request)
        return request

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error_type: str, message: str) -> None:
        self._json(status, {"type": "error", "error": {"type": error_type, "message": message}})

    def do_GET(self) -> None:
        self._record(None)
        self._other()

    def do_HEAD(self) -> None:
        self._record(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._body()
        request = self._record(body)
        path = self.path.split("?", 1)[0]
        if path == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": 42})
        elif path == "/v1/messages" and isinstance(body, dict):
            if self.owner._is_rejected(request):
                if self.owner.on_reject is not None:
                    self.owner.on_reject(request)  # before the 401 goes out
                self._error(401, "authentication_error", "OAuth token has expired or was revoked")
                return
            if self.owner.require_oauth_beta and request.is_bare_bearer:
                # What the real API answers to an OAuth token sent without the OAuth beta.
                self._error(401, "authentication_error", "OAuth authentication is currently not supported.")
                return
            reply = self.owner._reply_for(body)
            if reply.status != 200:
                self._error(reply.status, reply.error_type, reply.text or "")
            elif body.get("stream"):
                self._stream(body, reply)
            else:
                self._json(200, self._message(body, reply))
        else:
            self._other()

    def _other(self) -> None:
        self._error(404, "not_found_error", f"the fake Messages API has no {self.path}")

    # --------------------------------------------------------- the message

    @staticmethod
    def _content(reply: Reply) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if reply.text is not None:
            content.append({"type": "text", "text": reply.text})
        if reply.tool is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": reply.tool,
                    "input": reply.tool_input,
                }
            )
        return content

    def _message(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        with self.owner._cond:
            self.owner.message_ids.append(message_id)
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or MODEL,
            "content": self._content(reply),
            "stop_reason": "tool_use" if reply.tool else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        message = self._message(body, reply)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        }
        self._event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": part} for part in _split(block["text"], reply.chunks)
                ]
            else:
                opening = {**block, "input": {}}
                raw = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": part} for part in _split(raw, 2)]
            self._event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
            for delta in deltas:
                if self.owner.token_delay:
                    time.sleep(self.owner.token_delay)
                self._event(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()
