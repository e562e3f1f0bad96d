"""9. A flooding neighbour: one session's turns while another streams to clients that never read.

Set-up: the server in its own process (``server_boot.py``), two sessions.
Session B has the real agent (``python3 -m agent``, builtin runner) and a
client timing ``/quiet`` turns, as in benchmark 3. Session A has a raw agent
(its own process, websocket-client) that streams 64 KB token frames as fast as
the server takes them, and three subscribed clients that never read: their
outboxes fill to their byte budget and they are closed (4008), while the
session keeps streaming.

Floor, same run: session B's own turns with A quiet. Quiet and flooding
blocks of turns alternate, so that drift hits both alike. Each flood runs
for one block only, and the flooding process ends by itself after 300 s at most.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from typing import Any

import websocket

from scripts.bench.b_turn import berth_turn, connect, wait_idle
from scripts.bench.common import Context, Process, StealMeter, row, start_boot_server, start_host_agent

TITLE = "Turn round trip of one session while a neighbour floods never-reading clients"
CHUNK = json.dumps({"type": "stream", "messageId": "flood", "tokens": ["x" * 65_000]})


def _flood(url: str, token: str, go: Any, stop: Any, sent: Any) -> None:
    """In its own process (its own GIL): stream whenever ``go`` is set, until ``stop``."""
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=30)
    ws.send(json.dumps({"type": "ready"}))
    deadline = time.monotonic() + 300
    while not stop.is_set() and time.monotonic() < deadline:
        if not go.wait(0.1):
            continue
        ws.send(CHUNK)
        with sent.get_lock():
            sent.value += len(CHUNK)
    ws.close()


class Flood:
    """A raw agent for session A, in a separate process, streaming while switched on."""

    def __init__(self, server: Any, sid: str, token: str) -> None:
        self._go, self._stop = mp.Event(), mp.Event()
        self._sent = mp.Value("q", 0)
        url = f"{server.ws}/agent/{sid}"
        self._proc = mp.Process(
            target=_flood, args=(url, token, self._go, self._stop, self._sent), daemon=True
        )
        self._proc.start()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def start(self) -> None:
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def close(self) -> None:
        self._stop.set()
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()


def run(ctx: Context) -> dict[str, Any]:
    blocks = 6 if ctx.quick else 20
    per_block = 50 if ctx.quick else 100
    result: dict[str, Any] = {"id": "neighbour", "title": TITLE}
    steal = StealMeter()
    server = start_boot_server(ctx.workdir, ctx.instance("neighbour"))
    ctx.note_command(server.process.argv)
    agent: Process | None = None
    clients: list[websocket.WebSocket] = []
    flood: Flood | None = None
    try:
        flooding, measured = server.create_session("flooding"), server.create_session("measured")
        tokens = server.tokens(ctx.workdir / "tokens-neighbour.json")
        agent = start_host_agent(ctx.workdir, server, measured, tokens[measured], "neighbour")
        ws = connect(server.ws + "/ws", server.api_token)
        clients.append(ws)
        wait_idle(ws, measured)
        flood = Flood(server, flooding, tokens[flooding])
        prompt = json.dumps({"type": "send_prompt", "sessionId": measured, "content": "/quiet"}).encode()
        for _ in range(50):
            berth_turn(ws, prompt)
        quiet: list[float] = []
        loud: list[float] = []
        streamed = 0
        for _block in range(blocks):
            for _ in range(per_block):
                quiet.append(berth_turn(ws, prompt)[0] * 1000)
            deaf = [connect(server.ws + "/ws", server.api_token) for _ in range(3)]
            for client in deaf:  # subscribed, then never read again
                client.send(json.dumps({"type": "subscribe", "sessionId": flooding}))
            clients.extend(deaf)
            before = flood.sent
            flood.start()
            for _ in range(per_block):
                loud.append(berth_turn(ws, prompt)[0] * 1000)
            flood.pause()
            streamed += flood.sent - before
        ctx.log(f"neighbour: {blocks} blocks of {per_block} turns each way; {streamed / 1e6:.0f} MB flooded")
        result["rows"] = [
            row(
                "turn p50/p99 while a neighbour floods 3 never-reading clients",
                "ms",
                loud,
                "the same session's turns, neighbour quiet",
                quiet,
            ),
        ]
        result["extra"] = {"flooded_mb": streamed / 1e6, "turns_each": len(quiet)}
        result["samples"] = {"flooding_ms": loud, "quiet_ms": quiet}
    finally:
        if flood is not None:
            flood.close()
        for client in clients:
            try:
                client.close()
            except Exception:
                pass
        if agent is not None:
            agent.stop(timeout=20)
        server.stop()
        result["steal"] = steal.stop()
    stats, floor = result["rows"][0]["stats"], result["rows"][0]["floor_stats"]
    ratio = stats["p99"] / floor["p99"] if floor["p99"] else float("inf")
    result["verdicts"] = [
        {
            "target": "neighbour's flood leaves p99 within 2× of quiet",
            "value": f"{ratio:.2f}×",
            "ok": ratio <= 2.0,
        },
    ]
    return result
