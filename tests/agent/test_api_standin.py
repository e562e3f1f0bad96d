"""The agent's Messages API stand-in, over real sockets on 127.0.0.1.

A stdlib HTTP client (as the CLI's is, a plain HTTP/1.1 client with
keep-alive) talks to the stand-in; after ``forward_to`` the stand-in talks
to the fake Messages API (``tests/fake_messages_api.py``), which records
what reached it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from agent.api_standin import ApiStandIn, Upstream
from tests.fake_messages_api import OAUTH_BETA, FakeMessagesApi
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)

TOKEN = "sk-ant-oat01-stand-in-test-token"
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "anthropic-beta": OAUTH_BETA,
    "Content-Type": "application/json",
}


class Served:
    """The stand-in on a loop of its own thread, as in a pooled agent."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stand_in = self.call(ApiStandIn().start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def client(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.stand_in.url)
        assert parts.hostname is not None
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def close(self) -> None:
        self.call(self.stand_in.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.close()


@pytest.fixture
def api() -> Iterator[FakeMessagesApi]:
    with FakeMessagesApi() as fake:
        yield fake


def _body(prompt: str, stream: bool = True) -> bytes:
    messages = [{"role": "user", "content": prompt}]
    return json.dumps(
        {"model": "m", "stream": stream, "tools": [{"name": "t"}], "messages": messages}
    ).encode()


def _post(conn: http.client.HTTPConnection, prompt: str, stream: bool = True) -> tuple[int, str]:
    conn.request("POST", "/v1/messages?beta=true", body=_body(prompt, stream), headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read().decode()


def _streamed_text(sse: str) -> str:
    events = [json.loads(line[len("data: ") :]) for line in sse.splitlines() if line.startswith("data: ")]
    return "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")


def test_before_forwarding_the_stand_in_answers_a_streamed_turn_itself_and_nothing_leaves(served, api):
    conn = served.client()
    status, sse = _post(conn, "warm up")
    assert status == 200 and _streamed_text(sse) == "ok"
    assert [json.loads(line[6:])["type"] for line in sse.splitlines() if line.startswith("data: ")][-1] == (
        "message_stop"
    )
    status, whole = _post(conn, "not streamed", stream=False)
    assert status == 200 and json.loads(whole)["content"] == [{"type": "text", "text": "ok"}]
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert (head.status, head.read()) == (200, b"")
    conn.request("POST", "/v1/messages/count_tokens", body=b"{}", headers=HEADERS)
    assert json.loads(conn.getresponse().read()) == {"input_tokens": 1}
    assert served.stand_in.answered == 4 and served.stand_in.forwarded == 0
    assert api.snapshot() == []


def test_after_forwarding_a_kept_alive_connection_reaches_the_api_with_its_headers_and_streams_back(
    served, api
):
    conn = served.client()
    assert _post(conn, "warm up")[0] == 200  # the connection opened before the claim stays in use
    served.stand_in.forward_to(api.url)
    status, sse = _post(conn, "hello through")
    assert status == 200 and _streamed_text(sse) == "You said: hello through"
    status, sse = _post(conn, "and again")
    assert _streamed_text(sse) == "You said: and again"
    first, second = api.conversation()
    assert (first.prompt, first.bearer, OAUTH_BETA in first.betas) == ("hello through", TOKEN, True)
    assert first.headers["host"] == urlsplit(api.url).netloc
    assert second.prompt == "and again"
    assert served.stand_in.forwarded == 2


def test_a_chunked_request_body_is_forwarded_whole(served):
    # The fake API reads Content-Length bodies only: a raw upstream records the bytes.
    upstream = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = upstream.accept()
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += conn.recv(65536)
        seen.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port = upstream.getsockname()[1]
    served.stand_in.forward_to(f"http://127.0.0.1:{port}/prefix")
    conn = served.client()
    conn.putrequest("POST", "/v1/messages/count_tokens", skip_host=True)
    conn.putheader("Host", "stand-in")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"{}")
    upstream.close()
    [raw] = seen
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /prefix/v1/messages/count_tokens HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in head.split(b"\r\n")
    assert body == b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n"


def test_an_api_error_reaches_the_client_unchanged(served, api):
    api.reject(TOKEN)
    served.stand_in.forward_to(api.url)
    status, text = _post(served.client(), "refused")
    assert status == 401 and json.loads(text)["error"]["type"] == "authentication_error"


def test_a_configured_url_with_a_path_keeps_its_prefix_and_a_bad_one_is_refused_by_name():
    gateway = Upstream.parse("https://gw.example:8443/anthropic/")
    assert (gateway.host, gateway.port, gateway.tls, gateway.authority, gateway.prefix) == (
        "gw.example",
        8443,
        True,
        "gw.example:8443",
        "/anthropic",
    )
    assert Upstream.parse("http://127.0.0.1:9").port == 9
    with pytest.raises(ValueError, match="ftp://x"):
        Upstream.parse("ftp://x")


class RawUpstream:
    """A loopback HTTP server that counts its connections and answers ``{}``;
    ``close_first`` hangs up on the first connection at once, as a server
    does with a kept-alive connection that sat idle past its timeout."""

    def __init__(self, close_first: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.requests: list[int] = []  # the connection number each request came on
        self._close_first = close_first
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self._close_first and self.accepted == 1:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, self.accepted), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        data = b""
        with conn:
            while True:
                head, sep, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if sep and len(rest) >= length:
                    self.requests.append(number)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    data = rest[length:]
                    continue
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk

    def close(self) -> None:
        self.sock.close()


def _forward(served: Served, url: str) -> None:
    """``forward_to`` on the stand-in's loop, as the pooled agent calls it at the claim."""

    async def claim() -> None:
        served.stand_in.forward_to(url)

    served.call(claim())


def test_forwarding_opens_the_upstream_connection_at_the_claim_and_the_first_request_uses_it(served):
    upstream = RawUpstream()
    try:
        _forward(served, upstream.url)
        # connected before any request: the first prompt waits for no handshake
        wait_until(lambda: upstream.accepted == 1, timeout=10, what="the spare upstream connection")
        conn = served.client()
        for _ in range(2):
            conn.request("POST", "/v1/messages/count_tokens", body=b"{}", headers=HEADERS)
            assert conn.getresponse().read() == b"{}"
        assert upstream.requests == [1, 1] and upstream.accepted == 1
    finally:
        upstream.close()


def test_a_spare_connection_the_upstream_closed_is_not_used(served):
    upstream = RawUpstream(close_first=True)
    try:
        _forward(served, upstream.url)
        wait_until(lambda: upstream.accepted == 1, timeout=10, what="the spare upstream connection")

        async def spare_ended() -> bool:
            spare = served.stand_in._spare
            return spare is not None and spare.done() and spare.result()[0].at_eof()

        wait_until(lambda: served.call(spare_ended()), timeout=10, what="the stand-in to see the hang-up")
        conn = served.client()
        conn.request("POST", "/v1/messages/count_tokens", body=b"{}", headers=HEADERS)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"{}")
        assert upstream.requests == [2]
    finally:
        upstream.close()
