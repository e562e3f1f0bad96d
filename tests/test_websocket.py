"""The server-side WebSocket: concurrent senders, a slow reader, a full socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from werkzeug.serving import make_server

from tests.waiting import wait_until
from transport.websocket import InlineWebSocket

SENDERS = 4
FRAMES = 3000


class _Server:
    """A werkzeug server whose only route accepts one InlineWebSocket and runs ``behaviour``."""

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.accepted: list[InlineWebSocket] = []
        self.httpd = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.httpd.server_port}/"

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        ws = InlineWebSocket(environ, limit=1_000_000, max_message_size=1 << 20, ping_interval=None, name="t")
        self.accepted.append(ws)
        self.behaviour(ws)
        ws.finish()
        raise ConnectionError("websocket over")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(behaviour: Any) -> _Server:
        servers.append(_Server(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_concurrent_senders_to_a_slow_reader_deliver_every_frame_intact_and_in_order(serve):
    started = threading.Event()

    def behaviour(ws: InlineWebSocket) -> None:
        def sender(n: int) -> None:
            started.wait(10)
            for i in range(FRAMES):
                assert ws.send_text(f"{n}:{i}:" + "x" * 200)

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        ws.receive(timeout=30)  # until the client says it is done

    server = serve(behaviour)
    client = websocket.create_connection(server.url, timeout=30)
    started.set()
    # Read only once the socket is full and the writer thread has taken over.
    wait_until(lambda: server.accepted and server.accepted[0].backlog() > 0, what="a backlog")
    last = [-1] * SENDERS
    for _ in range(SENDERS * FRAMES):
        n, i, _ = str(client.recv()).split(":")
        assert int(i) == last[int(n)] + 1
        last[int(n)] = int(i)
    client.send("done")
    client.close()
    assert last == [FRAMES - 1] * SENDERS


def test_a_full_backlog_is_reported_instead_of_blocking_the_sender(serve):
    result: dict[str, Any] = {}
    reader_may_go = threading.Event()

    def behaviour(ws: InlineWebSocket) -> None:
        ws._limit = 10  # a tiny outbox
        accepted = 0
        began = time.monotonic()
        for _ in range(100_000):
            if not ws.send_text("y" * 10_000):
                break
            accepted += 1
        result["accepted"], result["seconds"] = accepted, time.monotonic() - began
        reader_may_go.set()
        ws.close(4008, "too slow")

    server = serve(behaviour)
    client = websocket.create_connection(server.url, timeout=30)
    assert reader_may_go.wait(30)
    assert result["accepted"] < 100_000 and result["seconds"] < 5
    client.close()


@pytest.mark.parametrize("size", [0, 5, 125, 126, 200, 65535, 65536, 100_000])
def test_hand_made_text_frames_are_byte_for_byte_what_wsproto_makes(size):
    from wsproto.frame_protocol import FrameProtocol

    from transport.websocket import _text_frame

    payload = ("é" * size).encode()[:size]  # multi-byte UTF-8, cut at any byte count
    text = payload.decode(errors="ignore").encode()
    assert _text_frame(text) == bytes(FrameProtocol(False, []).send_data(text.decode(), True))
