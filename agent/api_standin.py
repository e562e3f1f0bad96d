"""A stand-in for the Messages API on loopback, so a pooled CLI can be warmed.

A freshly started Claude Code CLI's first prompt costs several times its
later ones (code run for the first time, tool definitions built, its first
API connection). A pooled container cannot make that first turn against the
real API: it has no session and no token. So the CLI's ``ANTHROPIC_BASE_URL``
points here. Until ``forward_to`` the stand-in answers every request itself
(a short canned streamed reply, nothing leaves the container); from then on
every request is forwarded to the configured API (Anthropic's unless the
user set one) with its ``Host`` rewritten, and every response byte goes back
as it arrives. Requests are parsed only as far as their framing (head,
``Content-Length`` or chunked body); responses are piped untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ANTHROPIC_API = "https://api.anthropic.com"
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Upstream:
    """Where forwarded requests go."""

    host: str
    port: int
    tls: bool
    #: The ``Host`` header value the upstream expects.
    authority: str
    #: A path prefix of the configured base URL (``https://gw.example/anthropic``).
    prefix: str

    @staticmethod
    def parse(url: str) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the Messages API URL {url!r} is not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        authority = parts.netloc.rsplit("@", 1)[-1]
        return Upstream(parts.hostname, port, tls, authority, parts.path.rstrip("/"))


class _Request:
    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> None:
        self.method, self.target, self.version, self.headers = method, target, version, headers

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


async def _read_request(reader: asyncio.StreamReader) -> tuple[_Request, bytes] | None:
    """The next request's head and raw body; None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise ValueError("request head too large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    request = _Request(method, target, version, headers)
    if (request.header("transfer-encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            body += size_line
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    body += trailer
                    if trailer == b"\r\n":
                        break
                break
            body += await reader.readexactly(size + 2)
        return request, bytes(body)
    length = int(request.header("content-length") or 0)
    return request, await reader.readexactly(length) if length else b""


def _dechunk(raw: bytes) -> bytes:
    out, rest = bytearray(), raw
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def _canned(request: _Request, body: bytes) -> bytes:
    """A whole HTTP response the CLI takes as a finished, one-word turn."""
    if request.method == "HEAD":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    chunked = (request.header("transfer-encoding") or "").lower() == "chunked"
    try:
        payload = json.loads(_dechunk(body) if chunked else body or b"{}")
    except ValueError:
        payload = {}
    path = request.target.split("?", 1)[0]
    if not path.endswith("/v1/messages") or request.method != "POST":
        if path.endswith("/count_tokens"):
            return _response(200, "application/json", b'{"input_tokens": 1}')
        error = {"type": "error", "error": {"type": "not_found_error", "message": "warm-up stand-in"}}
        return _response(404, "application/json", json.dumps(error).encode())
    model = str(payload.get("model") or "")
    message: dict[str, object] = {
        "id": f"msg_warmup_{uuid.uuid4().hex[:16]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    if not payload.get("stream"):
        whole = {**message, "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"}
        return _response(200, "application/json", json.dumps(whole).encode())
    text = {"type": "text", "text": ""}
    delta = {"type": "text_delta", "text": "ok"}
    end = {"stop_reason": "end_turn", "stop_sequence": None}
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": text},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": end, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]
    stream = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    return _response(200, "text/event-stream", stream)


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found"}.get(status, "")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nrequest-id: req_warmup\r\n\r\n"
    )
    return head.encode() + body


_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _retrieve(task: asyncio.Task[_Streams]) -> None:
    """A spare that failed to connect is logged, not left as an unretrieved exception."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("could not open a spare upstream connection: %s", task.exception())


def _close_when_open(task: asyncio.Task[_Streams]) -> None:
    if not task.done():
        task.cancel()
    elif not task.cancelled() and task.exception() is None:
        task.result()[1].close()


class ApiStandIn:
    """The loopback server the CLI's ``ANTHROPIC_BASE_URL`` names."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._upstream: Upstream | None = None
        self._ssl: ssl.SSLContext | None = None
        #: A connection to the current upstream opened at ``forward_to``, for the
        #: first forwarded request: the claimed session's first prompt then waits
        #: for no TCP (or TLS) handshake. ``forward_to`` drops it with its upstream.
        self._spare: asyncio.Task[_Streams] | None = None
        self.answered = 0
        self.forwarded = 0
        #: Each client connection's writer and task (``close`` ends them).
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> ApiStandIn:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        return self

    def forward_to(self, url: str | None, extra_ca: str | None = None) -> None:
        """From now on every request goes to ``url`` (Anthropic's API when None).

        ``extra_ca``: a CA file the CLI would trust too (``NODE_EXTRA_CA_CERTS``).
        """
        upstream = Upstream.parse(url or ANTHROPIC_API)
        if upstream.tls and self._ssl is None:
            context = ssl.create_default_context()
            if extra_ca:
                context.load_verify_locations(cafile=extra_ca)
            self._ssl = context
        self._upstream = upstream
        self._drop_spare()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to connect on: the first request connects
        self._spare = asyncio.ensure_future(self._open(upstream))
        self._spare.add_done_callback(_retrieve)

    async def close(self) -> None:
        """Stop listening and end every connection (its reader sees the end, its pipe is cancelled)."""
        if self._server is not None:
            self._server.close()
        self._drop_spare()
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        upstream: tuple[asyncio.StreamWriter, asyncio.Task[None]] | None = None
        try:
            while True:
                got = await _read_request(reader)
                if got is None:
                    break
                request, body = got
                if self._upstream is None:
                    self.answered += 1
                    writer.write(_canned(request, body))
                    await writer.drain()
                    continue
                if upstream is None or upstream[1].done():
                    upstream = await self._connect(self._upstream, writer)
                self.forwarded += 1
                up_writer = upstream[0]
                up_writer.write(self._head(request, self._upstream) + body)
                await up_writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            log.debug("a stand-in connection ended: %s", exc)
        finally:
            if upstream is not None:
                upstream[0].close()
                upstream[1].cancel()
            writer.close()
            self._connections.pop(task, None)

    async def _connect(
        self, target: Upstream, downstream: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamWriter, asyncio.Task[None]]:
        streams = await self._take_spare() or await self._open(target)
        up_reader, up_writer = streams
        return up_writer, asyncio.ensure_future(self._pipe(up_reader, downstream))

    async def _open(self, target: Upstream) -> _Streams:
        # asyncio sets TCP_NODELAY on TCP transports: no byte waits for Nagle.
        return await asyncio.open_connection(
            target.host,
            target.port,
            ssl=self._ssl if target.tls else None,
            server_hostname=target.host if target.tls else None,
        )

    async def _take_spare(self) -> _Streams | None:
        """The spare connection, if there is one and it is still open (else None)."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            reader, writer = await spare
        except (OSError, ssl.SSLError) as exc:
            log.debug("the spare upstream connection failed: %s", exc)
            return None
        if reader.at_eof() or writer.is_closing():  # the upstream closed it while idle
            writer.close()
            return None
        return reader, writer

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            _close_when_open(spare)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _head(request: _Request, target: Upstream) -> bytes:
        lines = [f"{request.method} {target.prefix}{request.target} {request.version}"]
        for name, value in request.headers:
            lines.append(f"Host: {target.authority}" if name.lower() == "host" else f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
