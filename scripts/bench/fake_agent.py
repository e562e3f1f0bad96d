"""A minimal agent that streams ONE token per ``stream`` frame (relay stress).

The real agent coalesces the builtin runner's tokens into a few large frames
(its runner emits them faster than the link sends), so it barely exercises
the server's per-frame path. This agent (raw socket, its own process) answers
every ``user_message`` whose content is ``/stream N`` with N single-token
``stream`` frames ``t0 `` … and a ``result``, all pre-encoded and written
with one ``sendall``: the server's per-frame relay cost is then what bounds
the rate at the client.

    python3 -m scripts.bench.fake_agent --port P --session S   (token on stdin)
"""

from __future__ import annotations

import argparse
import json
import sys

from scripts.bench.wsraw import RawWebSocket, encode_frame


def frames_for(count: int, message_id: str) -> bytes:
    parts = [
        encode_frame(
            json.dumps(
                {"type": "stream", "messageId": message_id, "tokens": [f"t{i} "]}, separators=(",", ":")
            ).encode()
        )
        for i in range(count)
    ]
    parts.append(encode_frame(b'{"type":"result","result":"","costUsd":0.0,"isError":false}'))
    return b"".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description="single-token-per-frame agent")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--session", required=True)
    args = parser.parse_args()
    token = sys.stdin.readline().strip()
    ws = RawWebSocket("127.0.0.1", args.port, f"/agent/{args.session}", [f"Authorization: Bearer {token}"])
    ws.settimeout(None)
    ws.send_text(b'{"type":"ready"}')
    print("ready", flush=True)
    cache: dict[int, bytes] = {}
    turn = 0
    while True:
        for payload in ws.recv_many():
            if not payload.startswith(b'{"type":"user_message"'):
                continue
            frame = json.loads(payload)
            content = frame.get("content", "")
            if frame.get("n"):  # acknowledge it, as every agent must (docs/protocol.md)
                ws.send_text(b'{"type":"link_ack","received":%d}' % frame["n"])
            command, _, rest = content.partition(" ")
            if command != "/stream" or not rest.strip().isdigit():
                ws.send_text(b'{"type":"result","result":"","costUsd":0.0,"isError":false}')
                continue
            count = int(rest)
            turn += 1
            if count not in cache:
                cache[count] = frames_for(count, "fake")
            ws.sock.sendall(cache[count])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConnectionError, OSError):
        sys.exit(0)
