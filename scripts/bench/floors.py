"""Bare servers for the floors, each run in its own process like Berth's server.

``echo``: werkzeug's threaded server + simple-websocket with Berth's
settings (ping interval, message size limit), the receiving thread sending
each message straight back: a single hop, no actor, no outbox thread. The
floor of the turn round trip.

``relay``: the same server with two hops, the shape of a Berth turn without
Berth: a client connects to ``/client``, a bare agent (``relay-agent``: a
websocket-client loop in its own process that sends each message straight
back from its reading thread) to ``/agent``; each message from the client
goes to the agent, each from the agent to the client, each sent by the
thread that received it. The floor of a relayed turn: two hops, two
thread hand-offs in the server (simple-websocket's reader to the handler).

``replay``: a raw-socket WebSocket server that, when the client sends
``go``, writes a recorded sequence of frames (``--frames``: a JSON list of
the payloads a client received from Berth) in one ``sendall``, followed by a
``result`` frame. The sender is never the bottleneck, so it measures how fast
the benchmark client can *receive and check* exactly what Berth sent: the
client's own ceiling in the token relay table.

    python3 -m scripts.bench.floors echo
    python3 -m scripts.bench.floors relay
    python3 -m scripts.bench.floors relay-agent --port PORT
    python3 -m scripts.bench.floors replay --frames frames.json

Each prints ``listening <port>`` and serves until stdin reaches EOF.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import sys
import threading
from typing import Any

from scripts.bench.wsraw import OP_CLOSE, OP_PING, OP_PONG, encode_server_frame, parse_frames

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _serve_until_stdin_closes(server_close: Any) -> None:
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    server_close()


# ----------------------------------------------------------------- echo


def _serve_websockets(route: Any) -> int:
    """werkzeug's threaded server + simple-websocket with Berth's settings;
    ``route(path)`` says where each message received on a socket of that path goes."""
    import simple_websocket
    from werkzeug.serving import WSGIRequestHandler, make_server

    from actors.config import BerthConfig
    from transport.settings import ServerSettings

    settings = ServerSettings()

    class Quiet(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

        def run_wsgi(self) -> None:
            super().run_wsgi()
            self.close_connection = True  # the socket carried a WebSocket, not more HTTP

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        ws = simple_websocket.Server.accept(
            environ,
            max_message_size=BerthConfig().max_agent_frame_bytes,
            ping_interval=settings.ping_interval,
        )
        target = route(environ.get("PATH_INFO", "/"), ws)
        try:
            while True:
                data = ws.receive(timeout=1.0)
                if data is not None:
                    target().send(data)
                elif not ws.connected:
                    break
        except simple_websocket.ConnectionClosed:
            pass
        raise ConnectionError("websocket closed")

    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    print(f"listening {httpd.server_port}", flush=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _serve_until_stdin_closes(httpd.shutdown)
    return 0


def run_echo() -> int:
    return _serve_websockets(lambda _path, ws: lambda: ws)


def run_relay() -> int:
    peers: dict[str, Any] = {}
    ready = threading.Condition()

    def route(path: str, ws: Any) -> Any:
        side, other = ("agent", "client") if path == "/agent" else ("client", "agent")
        with ready:
            peers[side] = ws
            ready.notify_all()

        def target() -> Any:
            peer = peers.get(other)
            if peer is None:
                with ready:
                    ready.wait_for(lambda: other in peers, timeout=30)
                peer = peers[other]
            return peer

        return target

    return _serve_websockets(route)


def run_relay_agent(port: int) -> int:
    """A bare agent: each message goes straight back from the reading thread."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/agent", skip_utf8_validation=True)
    if ws.sock is not None:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("connected", flush=True)
    try:
        while True:
            _op, data = ws.recv_data()
            ws.send(data, websocket.ABNF.OPCODE_TEXT)
    except (websocket.WebSocketException, OSError):
        return 0


# ----------------------------------------------------------------- replay


def _handshake(conn: socket.socket) -> bytearray:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    key = ""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    return bytearray(rest)


def _replay_connection(conn: socket.socket, blob: bytes) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        buf = _handshake(conn)
        while True:
            frames, used = parse_frames(buf)
            del buf[:used]
            for opcode, _fin, payload in frames:
                if opcode == OP_CLOSE:
                    conn.sendall(encode_server_frame(payload[:2], OP_CLOSE))
                    return
                if opcode == OP_PING:
                    conn.sendall(encode_server_frame(payload, OP_PONG))
                elif payload == b"go":
                    conn.sendall(blob)
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
    except OSError:
        pass
    finally:
        conn.close()


def run_replay(frames_path: str) -> int:
    with open(frames_path) as f:
        payloads: list[str] = json.load(f)
    end = b'{"type":"result","sessionId":"replay","seq":0,"result":"","costUsd":0.0,"isError":false}'
    blob = b"".join(encode_server_frame(p.encode()) for p in payloads) + encode_server_frame(end)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"listening {listener.getsockname()[1]}", flush=True)

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_replay_connection, args=(conn, blob), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    _serve_until_stdin_closes(listener.close)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="bare floor servers")
    sub = parser.add_subparsers(dest="kind", required=True)
    sub.add_parser("echo")
    sub.add_parser("relay")
    agent = sub.add_parser("relay-agent")
    agent.add_argument("--port", type=int, required=True)
    replay = sub.add_parser("replay")
    replay.add_argument("--frames", required=True)
    args = parser.parse_args()
    if args.kind == "echo":
        return run_echo()
    if args.kind == "relay":
        return run_relay()
    if args.kind == "relay-agent":
        return run_relay_agent(args.port)
    return run_replay(args.frames)


if __name__ == "__main__":
    sys.exit(main())
