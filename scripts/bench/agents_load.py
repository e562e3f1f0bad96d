"""ONE load process holding many simulated agents' WebSocket connections.

Each simulated agent opens ``/agent/<session id>`` with its session token
(raw socket, hand-written handshake), sends ``ready`` and then only answers
the server's pings (simple-websocket closes a peer that misses a pong) and
discards everything else. One thread, one epoll selector; no containers.

Commands on stdin, answers on stdout:

    connect <tokens.json>   connect every session in the file not yet connected
                            -> "connected <open> <failed>"
    count                   -> "open <n> closed <n>"
    quit / EOF              close everything and exit
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

from scripts.bench.common import raise_fd_limit
from scripts.bench.wsraw import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    check_handshake_response,
    encode_frame,
    handshake_request,
    parse_frames,
)

READY = encode_frame(b'{"type":"ready"}', OP_TEXT)


class Agent:
    __slots__ = ("buf", "sid", "sock")

    def __init__(self, sid: str, sock: socket.socket, buf: bytearray) -> None:
        self.sid, self.sock, self.buf = sid, sock, buf


def open_agent(port: int, sid: str, token: str, timeout: float = 30.0) -> Agent:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    request, _ = handshake_request("127.0.0.1", port, f"/agent/{sid}", [f"Authorization: Bearer {token}"])
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    check_handshake_response(head)
    sock.sendall(READY)
    sock.setblocking(False)
    return Agent(sid, sock, bytearray(rest))


def main() -> int:
    parser = argparse.ArgumentParser(description="simulated idle agents")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit(1 << 20)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    agents: dict[str, Agent] = {}
    closed = 0
    failed = 0

    def drop(agent: Agent) -> None:
        nonlocal closed
        try:
            selector.unregister(agent.sock)
        except (KeyError, ValueError):
            pass
        agent.sock.close()
        agents.pop(agent.sid, None)
        closed += 1

    running = True
    while running:
        for key, _ in selector.select(timeout=1.0):
            if key.data is None:
                line = sys.stdin.readline()
                word, _, rest = line.strip().partition(" ")
                if not line or word == "quit":
                    running = False
                elif word == "connect":
                    with open(rest) as f:
                        tokens: dict[str, str] = json.load(f)
                    started = time.monotonic()
                    for sid, token in tokens.items():
                        if sid in agents:
                            continue
                        try:
                            agent = open_agent(args.port, sid, token)
                        except (OSError, ConnectionError) as exc:
                            failed += 1
                            print(f"# {sid}: {exc}", file=sys.stderr, flush=True)
                            continue
                        agents[sid] = agent
                        selector.register(agent.sock, selectors.EVENT_READ, agent)
                    took = time.monotonic() - started
                    print(f"connected {len(agents)} {failed} {took:.3f}", flush=True)
                elif word == "count":
                    print(f"open {len(agents)} closed {closed}", flush=True)
                continue
            agent = key.data
            try:
                chunk = agent.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                drop(agent)
                continue
            if not chunk:
                drop(agent)
                continue
            agent.buf += chunk
            frames, used = parse_frames(agent.buf)
            del agent.buf[:used]
            for opcode, _fin, payload in frames:
                if opcode == OP_PING:
                    agent.sock.setblocking(True)
                    agent.sock.sendall(encode_frame(payload, OP_PONG))
                    agent.sock.setblocking(False)
                elif opcode == OP_CLOSE:
                    drop(agent)
                    break
    for agent in list(agents.values()):
        try:
            agent.sock.setblocking(True)
            agent.sock.settimeout(1.0)
            agent.sock.sendall(encode_frame(b"\x03\xe8", OP_CLOSE))
        except OSError:
            pass
        agent.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
