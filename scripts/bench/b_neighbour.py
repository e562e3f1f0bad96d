"""9. A flooding neighbour: one session's turns while another streams to clients that never read.

Set-up: the server in its own process (``server_boot.py``), two sessions.
Session B has the real agent (``python3 -m agent``, builtin runner) and a
client timing ``/quiet`` turns, as in benchmark 3. Session A has a raw agent
(its own process, websocket-client) that streams 64 KB token frames as fast as
the server takes them, and three subscribed clients that never read: their
outboxes fill to their byte budget and they are closed (4008), while the
session keeps streaming.

Floor, same run: session B's own turns with A quiet. Quiet and flooding
blocks of turns alternate, so that drift hits both alike. A flooding block is
timed only once the flood is in full swing (``WARMUP`` bytes sent, the deaf
clients closed); after it the flood pauses and sends a marker
(``session_info_update`` with a model name), and the quiet block starts only
once the server shows that marker: the server has worked off everything the
flood sent, so "quiet" is quiet. The flooding process ends by itself after
300 s at most.
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


#: Bytes the flood sends before its block's turns are timed (the clients are closed by then).
WARMUP = 32 * 1024 * 1024


def _flood(url: str, token: str, go: Any, stop: Any, sent: Any, marks: Any) -> None:
    """In its own process (its own GIL): stream whenever ``go`` is set, until ``stop``;
    on each pause, one marker frame (``marks`` counts them) after the last chunk."""
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=60)
    ws.send(json.dumps({"type": "ready"}))
    deadline = time.monotonic() + 300
    marked = 0
    while not stop.is_set() and time.monotonic() < deadline:
        if not go.wait(0.01):
            if marked < marks.value:
                marked = marks.value
                ws.send(json.dumps({"type": "session_info_update", "model": f"drained-{marked}"}))
            continue
        ws.send(CHUNK)
        with sent.get_lock():
            sent.value += len(CHUNK)
    ws.close()


class Flood:
    """A raw agent for session A, in a separate process, streaming while switched on."""

    def __init__(self, server: Any, sid: str, token: str) -> None:
        self._server, self._sid = server, sid
        self._go, self._stop = mp.Event(), mp.Event()
        self._sent = mp.Value("q", 0)
        self._marks = mp.Value("q", 0)
        url = f"{server.ws}/agent/{sid}"
        self._proc = mp.Process(
            target=_flood, args=(url, token, self._go, self._stop, self._sent, self._marks), daemon=True
        )
        self._proc.start()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def start(self, warmup: int) -> None:
        """Flood, and return once ``warmup`` more bytes went out."""
        until = self.sent + warmup
        self._go.set()
        deadline = time.monotonic() + 120
        while self.sent < until:
            if time.monotonic() > deadline or not self._proc.is_alive():
                raise RuntimeError("the flood did not get going")
            time.sleep(0.005)

    def pause_and_drain(self, timeout: float = 120.0) -> float:
        """Stop flooding; return once the server applied everything sent (seconds waited)."""
        began = time.monotonic()
        with self._marks.get_lock():
            self._go.clear()
            self._marks.value += 1
            want = f"drained-{self._marks.value}"
        while time.monotonic() - began < timeout:
            status, body = self._server.request("GET", f"/api/sessions/{self._sid}")
            if status == 200 and body["session"].get("model") == want:
                return time.monotonic() - began
            time.sleep(0.005)
        raise RuntimeError(f"the server did not work off the flood within {timeout:g} s")

    def close(self) -> None:
        self._stop.set()
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()


def _timed_block(ws: websocket.WebSocket, prompt: bytes, turns: int, seconds: float) -> list[float]:
    """At least ``turns`` turns and at least ``seconds`` of them (ms each)."""
    out: list[float] = []
    began = time.monotonic()
    while len(out) < turns or time.monotonic() - began < seconds:
        out.append(berth_turn(ws, prompt)[0] * 1000)
    return out


def _peak_rss_mb(pid: int) -> float:
    """The server process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pass(ctx: Context, budgets: bool) -> dict[str, Any]:
    """One server, two sessions: alternating quiet and flooding blocks of session B's turns.
    ``budgets``: the server keeps BerthConfig's agent frame and byte budgets (else they are off)."""
    blocks = 6 if ctx.quick else 20
    per_block = 50 if ctx.quick else 100
    block_seconds = 0.5 if ctx.quick else 1.0
    name = "neighbour-budgets" if budgets else "neighbour"
    extra = ("--default-agent-budgets",) if budgets else ()
    server = start_boot_server(ctx.workdir, ctx.instance(name), extra_args=extra)
    ctx.note_command(server.process.argv)
    agent: Process | None = None
    clients: list[websocket.WebSocket] = []
    flood: Flood | None = None
    try:
        flooding, measured = server.create_session("flooding"), server.create_session("measured")
        tokens = server.tokens(ctx.workdir / f"tokens-{name}.json")
        agent = start_host_agent(ctx.workdir, server, measured, tokens[measured], name)
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
        flood_seconds = 0.0
        drains: list[float] = []
        warmup = 24 * 1024 * 1024 if budgets else WARMUP  # past the byte burst: the sustained rate is timed
        for _block in range(blocks):
            quiet.extend(_timed_block(ws, prompt, per_block, block_seconds))
            deaf = [connect(server.ws + "/ws", server.api_token) for _ in range(3)]
            for client in deaf:  # subscribed, then never read again
                client.send(json.dumps({"type": "subscribe", "sessionId": flooding}))
            clients.extend(deaf)
            flood.start(warmup)
            before, began = flood.sent, time.monotonic()
            loud.extend(_timed_block(ws, prompt, per_block, block_seconds))
            flood_seconds += time.monotonic() - began
            streamed += flood.sent - before
            drains.append(flood.pause_and_drain())
        rate = streamed / flood_seconds / 1e6 if flood_seconds else 0.0
        peak = _peak_rss_mb(server.pid)
        ctx.log(
            f"{name}: {blocks} blocks of >= {per_block} turns and >= {block_seconds:g} s each way; "
            f"{streamed / 1e6:.0f} MB flooded while timed ({rate:.0f} MB/s); "
            f"drained in {max(drains):.2f} s at most; server peak RSS {peak:.0f} MB"
        )
        return {
            "quiet": quiet,
            "loud": loud,
            "extra": {
                "flooded_mb_while_timed": streamed / 1e6,
                "flood_mb_per_s_while_timed": rate,
                "drain_s_max": max(drains),
                "server_peak_rss_mb": peak,
                "turns_each": len(quiet),
            },
        }
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


def run(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = {"id": "neighbour", "title": TITLE}
    steal = StealMeter()
    try:
        passes = {"default budgets": _pass(ctx, budgets=True), "budgets off": _pass(ctx, budgets=False)}
    finally:
        result["steal"] = steal.stop()
    result["rows"] = [
        row(
            f"turn while a neighbour floods 3 never-reading clients ({label})",
            "ms",
            got["loud"],
            f"the same session's turns, neighbour quiet ({label})",
            got["quiet"],
        )
        for label, got in passes.items()
    ]
    result["extra"] = {label: got["extra"] for label, got in passes.items()}
    result["samples"] = {
        f"{label}: {series}_ms": got[series] for label, got in passes.items() for series in ("loud", "quiet")
    }
    result["verdicts"] = []
    for r in result["rows"]:
        stats, floor = r["stats"], r["floor_stats"]
        ratio = stats["p99"] / floor["p99"] if floor["p99"] else float("inf")
        label = r["label"].rsplit("(", 1)[1].rstrip(")")
        result["verdicts"].append(
            {"target": f"p99 within 1.5× of quiet ({label})", "value": f"{ratio:.2f}×", "ok": ratio <= 1.5}
        )
    return result
