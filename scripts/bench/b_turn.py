"""3. Turn round trip: a client's ``send_prompt /quiet`` until it sees the ``result``.

Set-up: the server in its own process (``server_boot.py``: ``start_server``
with ExternalRuntime, exactly ``berth serve --runtime external``), one
session created over REST, its token read from the bootstrap, the real agent
(``python3 -m agent``, builtin runner) on the host as a subprocess. The
client is websocket-client (``skip_utf8_validation=True``), subscribed to the
session; a turn is timed from ``send`` to the arrival of the ``result`` frame
(the frames before it are only checked for their type prefix).

Floor, same run, same client code path: a bare werkzeug + simple-websocket
echo server in its own process (``floors.py echo``), one hop, the same payload.
A second floor has a turn's shape, two hops: the same bare server relaying
to a bare agent process and back (``floors.py relay`` / ``relay-agent``).
Berth and floor turns alternate in blocks of 50 so that drift hits all alike.
A diagnostic series re-arms TCP_QUICKACK on the client socket before every
read: when it differs from the plain series, the server is holding small
frames back (Nagle's algorithm meeting the client's delayed ACK).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import websocket

from scripts.bench import profile
from scripts.bench.common import (
    Context,
    Process,
    StealMeter,
    cpu_seconds,
    python,
    row,
    start_boot_server,
    start_host_agent,
)

RESULT = b'{"type":"result"'
TITLE = "Turn round trip (client → server → agent → server → client)"


def connect(url: str, token: str | None = None) -> websocket.WebSocket:
    header = [f"Authorization: Bearer {token}"] if token else []
    return websocket.create_connection(url, header=header, skip_utf8_validation=True, timeout=30)


def wait_idle(ws: websocket.WebSocket, sid: str, timeout: float = 30.0) -> None:
    ws.send(json.dumps({"type": "subscribe", "sessionId": sid}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _op, data = ws.recv_data()
        if (
            data.startswith((b'{"type":"session_update"', b'{"type":"snapshot"'))
        ) and b'"status":"idle"' in data:
            return
    raise TimeoutError(f"session {sid} not idle within {timeout:g} s")


def berth_turn(ws: websocket.WebSocket, prompt: bytes, quickack: bool = False) -> tuple[float, float]:
    """(round trip to the result, time to the first frame back), seconds.

    ``quickack`` (diagnostic only): re-arm TCP_QUICKACK on the client socket
    before every read, so the client acknowledges at once instead of after
    the delayed-ACK timer (40 ms on Linux). If that changes the round trip,
    the server's socket is holding small frames back (Nagle's algorithm).
    """
    perf = time.perf_counter
    sock = ws.sock
    t0 = perf()
    ws.send(prompt, websocket.ABNF.OPCODE_TEXT)
    first = 0.0
    while True:
        if quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        _op, data = ws.recv_data()
        if not first:
            first = perf()
        if data.startswith(RESULT):
            return perf() - t0, first - t0


def echo_turn(ws: websocket.WebSocket, prompt: bytes) -> float:
    perf = time.perf_counter
    t0 = perf()
    ws.send(prompt, websocket.ABNF.OPCODE_TEXT)
    ws.recv_data()
    return perf() - t0


def run(ctx: Context) -> dict[str, Any]:
    turns = 300 if ctx.quick else 2000
    warmup = 100 if ctx.quick else 300
    # Small blocks: drift hits Berth and the floor alike, and neither connection idles past the
    # servers' 20 s ping interval (websocket-client answers pings only while it reads).
    blocks = turns // 50
    result: dict[str, Any] = {"id": "turn", "title": TITLE}
    steal = StealMeter()
    server = start_boot_server(ctx.workdir, ctx.instance("turn"))
    ctx.note_command(server.process.argv)
    echo = Process([python(), "-m", "scripts.bench.floors", "echo"], ctx.workdir / "floor-echo.log")
    ctx.note_command(echo.argv)
    relay = Process([python(), "-m", "scripts.bench.floors", "relay"], ctx.workdir / "floor-relay.log")
    ctx.note_command(relay.argv)
    relay_agent: Process | None = None
    agent: Process | None = None
    clients: list[websocket.WebSocket] = []
    try:
        sid = server.create_session("turn")
        token = server.tokens(ctx.workdir / "tokens-turn.json")[sid]
        agent = start_host_agent(ctx.workdir, server, sid, token, "turn")
        ctx.note_command(
            ["BERTH_RUNNER=builtin BERTH_SESSION_TOKEN=… BERTH_SESSION_ID=… BERTH_SERVER_URL=…", *agent.argv]
        )
        ws = connect(server.ws + "/ws", server.api_token)
        clients.append(ws)
        wait_idle(ws, sid)
        echo_port = int(echo.expect("listening ", 30).split()[1])
        ews = connect(f"ws://127.0.0.1:{echo_port}/")
        clients.append(ews)
        relay_port = int(relay.expect("listening ", 30).split()[1])
        relay_agent = Process(
            [python(), "-m", "scripts.bench.floors", "relay-agent", "--port", str(relay_port)],
            ctx.workdir / "floor-relay-agent.log",
        )
        ctx.note_command(relay_agent.argv)
        relay_agent.expect("connected", 30)
        rws = connect(f"ws://127.0.0.1:{relay_port}/client")
        clients.append(rws)
        prompt = json.dumps({"type": "send_prompt", "sessionId": sid, "content": "/quiet"}).encode()
        ctx.log(f"turn: warm-up {warmup} + {turns} turns each; Berth, echo floor and a diagnostic alternate")
        for _ in range(warmup):
            berth_turn(ws, prompt)
            echo_turn(ews, prompt)
            echo_turn(rws, prompt)
        rtt: list[float] = []
        first: list[float] = []
        floor: list[float] = []
        two_hops: list[float] = []
        quick: list[float] = []
        cpu = agent_cpu = 0.0
        for _block in range(blocks):
            c0, a0 = cpu_seconds(server.pid), cpu_seconds(agent.pid)
            for _ in range(turns // blocks):
                total, head = berth_turn(ws, prompt)
                rtt.append(total * 1000)
                first.append(head * 1000)
            cpu += cpu_seconds(server.pid) - c0
            agent_cpu += cpu_seconds(agent.pid) - a0
            for _ in range(turns // blocks):
                floor.append(echo_turn(ews, prompt) * 1000)
            for _ in range(turns // blocks):
                two_hops.append(echo_turn(rws, prompt) * 1000)
            for _ in range(turns // blocks // 2):
                quick.append(berth_turn(ws, prompt, quickack=True)[0] * 1000)
        result["rows"] = [
            row("Berth turn: send_prompt → result", "ms", rtt, "bare echo (simple-websocket, 1 hop)", floor),
            row(
                "the same Berth turns against a relay's floor",
                "ms",
                rtt,
                "bare two-hop relay (simple-websocket server, websocket-client agent)",
                two_hops,
            ),
            row(
                "Berth turn: send_prompt → first frame back",
                "ms",
                first,
                "bare echo (simple-websocket, 1 hop)",
                floor,
            ),
            row(
                "diagnostic: Berth turn with the client re-arming TCP_QUICKACK",
                "ms",
                quick,
                "bare echo (simple-websocket, 1 hop)",
                floor,
            ),
        ]
        result["extra"] = {
            "server_cpu_ms_per_turn": 1000 * cpu / len(rtt),
            "agent_cpu_ms_per_turn": 1000 * agent_cpu / len(rtt),
            "turns": len(rtt),
            "warmup": warmup,
        }
        result["samples"] = {
            "berth_ms": rtt,
            "first_frame_ms": first,
            "floor_ms": floor,
            "two_hop_floor_ms": two_hops,
            "quickack_ms": quick,
        }
        if ctx.profile and profile.available():
            result["profile"] = _profile(ctx, server.pid, ws, prompt)
    finally:
        for client in clients:
            try:
                client.close()
            except Exception:
                pass
        if agent is not None:
            agent.stop(timeout=20)
        echo.stop(timeout=10)
        if relay_agent is not None:
            relay_agent.stop(timeout=10)
        relay.stop(timeout=10)
        server.stop()
        result["steal"] = steal.stop()
    rows = result["rows"]
    p50, p99 = rows[0]["stats"]["median"], rows[0]["stats"]["p99"]
    result["verdicts"] = [
        {"target": "turn round trip p50 ≤ 0.4 ms", "value": f"{p50:.2f} ms", "ok": p50 <= 0.4},
        {"target": "turn round trip p99 ≤ 5 ms", "value": f"{p99:.2f} ms", "ok": p99 <= 5.0},
    ]
    result["previous"] = "0.5 ms p50 / 300 ms p99"
    return result


def _profile(ctx: Context, pid: int, ws: websocket.WebSocket, prompt: bytes) -> dict[str, Any]:
    duration = 6.0 if ctx.quick else 10.0
    out = ctx.results_dir / "profile-turn"
    ctx.log(f"turn: py-spy on the server for {duration:g} s of back-to-back turns (not measured)")
    rec = profile.record(pid, out, duration)
    for command in rec.commands:
        ctx.note_command(command)
    deadline = time.monotonic() + duration + 1.5
    count = 0
    while time.monotonic() < deadline:
        berth_turn(ws, prompt, quickack=True)  # more turns per second; the server's work is the same
        count += 1
    summary = rec.wait(timeout=60)
    summary["turns"] = count
    return summary
