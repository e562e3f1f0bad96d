"""7. The sessions API (``/v1/``) against Berth's WebSocket protocol, same server, same run.

Set-up as in ``b_turn.py``: the server in its own process (``server_boot.py``,
ExternalRuntime), sessions created over REST, the real agent (builtin
runner) on the host, one session per client so that each client's stream
carries only its own turns. The prompt is ``hello`` (the reply ``You said: hello``
is streamed). Three clients take turns in blocks of 25:

- WebSocket: websocket-client subscribed to the session, ``send_prompt`` →
  first ``stream`` frame (first token) → ``result`` (turn round trip).
- ``/v1/`` raw: one SSE stream (``GET …/events/stream?event_deltas=agent.message``
  over http.client) kept open; a turn is ``POST …/events`` with a
  ``user.message`` (a new connection each time: werkzeug closes every HTTP
  response's connection) → first ``event_delta`` on the stream (first token)
  → ``berth.turn_result``.
- ``/v1/`` with the ``anthropic`` SDK: ``client.beta.sessions.events.send``
  and iterating ``client.beta.sessions.events.stream`` (what a user writes).

Physical floor, same server and run: a bare HTTP exchange (``GET /api/health``
on a new connection, no actor), the least one ``POST`` of a turn can cost.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import websocket

from scripts.bench.b_turn import connect, wait_idle
from scripts.bench.common import HOST, Context, StealMeter, row, start_boot_server, start_host_agent

TITLE = "Sessions API (/v1/, SSE) vs the WebSocket protocol: first token and turn round trip"
BETA = "managed-agents-2026-04-01"
PROMPT = "hello"
BLOCK = 25


class SseClient:
    """One long-lived SSE stream read with http.client; ``until`` scans for event names."""

    def __init__(self, port: int, token: str, sid: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)
        path = f"/v1/sessions/sesn_{sid}/events/stream?event_deltas=agent.message"
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "anthropic-beta": BETA})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"stream answered {self.response.status}: {self.response.read()!r}")
        self.buffer = b""

    def until(self, name: bytes, first: bytes) -> tuple[float, float]:
        """(time ``first`` was seen, time ``name`` was seen), perf_counter seconds."""
        needle, first_needle = b"event: " + name + b"\n", b"event: " + first + b"\n"
        seen_first = 0.0
        while True:
            if not seen_first and first_needle in self.buffer:
                seen_first = time.perf_counter()
            index = self.buffer.find(needle)
            if index >= 0:
                end = self.buffer.find(b"\n\n", index)
                if end >= 0:
                    self.buffer = self.buffer[end + 2 :]
                    return seen_first or time.perf_counter(), time.perf_counter()
            chunk = self.response.read1(65536)
            if not chunk:
                raise EOFError("the event stream ended")
            self.buffer += chunk

    def close(self) -> None:
        self.conn.close()


def v1_turn(port: int, token: str, sid: str, sse: SseClient) -> tuple[float, float]:
    """POST a user.message, then read the stream to the turn's end; the POST's answer last."""
    body = json.dumps({"events": [{"type": "user.message", "content": [{"type": "text", "text": PROMPT}]}]})
    headers = {"Authorization": f"Bearer {token}", "anthropic-beta": BETA, "Content-Type": "application/json"}
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("POST", f"/v1/sessions/sesn_{sid}/events", body=body, headers=headers)
        first, end = sse.until(b"berth.turn_result", b"event_delta")
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"POST events answered {response.status}: {answer!r}")
    return end - t0, first - t0


def ws_turn(ws: websocket.WebSocket, prompt: bytes) -> tuple[float, float]:
    perf = time.perf_counter
    t0 = perf()
    ws.send(prompt, websocket.ABNF.OPCODE_TEXT)
    first = 0.0
    while True:
        _op, data = ws.recv_data()
        if not first and data.startswith(b'{"type":"stream"'):
            first = perf()
        if data.startswith(b'{"type":"result"'):
            return perf() - t0, first - t0


def sdk_turn(client: Any, sid: str, events: Any) -> tuple[float, float]:
    t0 = time.perf_counter()
    message = {"type": "user.message", "content": [{"type": "text", "text": PROMPT}]}
    client.beta.sessions.events.send(f"sesn_{sid}", events=[message])
    first = 0.0
    for event in events:
        if not first and event.type == "event_delta":
            first = time.perf_counter()
        if event.type == "berth.turn_result":
            return time.perf_counter() - t0, first - t0
    raise EOFError("the SDK's event stream ended")


def health(port: int) -> float:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/api/health")
    conn.getresponse().read()
    conn.close()
    return time.perf_counter() - t0


def run(ctx: Context) -> dict[str, Any]:
    import anthropic

    turns = 100 if ctx.quick else 500
    sdk_turns = turns // 2
    warmup = 20 if ctx.quick else 50
    result: dict[str, Any] = {"id": "sessions", "title": TITLE}
    steal = StealMeter()
    server = start_boot_server(ctx.workdir, ctx.instance("sessions"))
    ctx.note_command(server.process.argv)
    agents: list[Any] = []
    closers: list[Any] = []
    try:
        # One session per client: each stream then carries only its own client's turns.
        sids = {name: server.create_session(f"sessions-{name}") for name in ("ws", "v1", "sdk")}
        tokens = server.tokens(ctx.workdir / "tokens-sessions.json")
        for name, sid in sids.items():
            agents.append(start_host_agent(ctx.workdir, server, sid, tokens[sid], f"sessions-{name}"))
        ws = connect(server.ws + "/ws", server.api_token)
        closers.append(ws)
        for sid in sids.values():
            wait_idle(ws, sid)
        ws.close()
        ws = connect(server.ws + "/ws", server.api_token)
        closers.append(ws)
        wait_idle(ws, sids["ws"])
        sse = SseClient(server.port, server.api_token, sids["v1"])
        closers.append(sse)
        client = anthropic.Anthropic(base_url=server.http, auth_token=server.api_token, max_retries=0)
        sdk_stream = client.beta.sessions.events.stream(f"sesn_{sids['sdk']}", event_deltas=["agent.message"])
        closers.append(sdk_stream)
        sdk_events = iter(sdk_stream)
        sid = sids["ws"]
        prompt = json.dumps({"type": "send_prompt", "sessionId": sid, "content": PROMPT}).encode()
        ctx.log(f"sessions: warm-up {warmup}, then {turns} turns per client in blocks of {BLOCK}")
        for _ in range(warmup):
            ws_turn(ws, prompt)
            v1_turn(server.port, server.api_token, sids["v1"], sse)
            sdk_turn(client, sids["sdk"], sdk_events)
            health(server.port)
        series: dict[str, list[float]] = {
            k: [] for k in ("ws", "ws_first", "v1", "v1_first", "sdk", "sdk_first", "http")
        }
        for _block in range(turns // BLOCK):
            for _ in range(BLOCK):
                total, head = ws_turn(ws, prompt)
                series["ws"].append(total * 1000)
                series["ws_first"].append(head * 1000)
            for _ in range(BLOCK):
                total, head = v1_turn(server.port, server.api_token, sids["v1"], sse)
                series["v1"].append(total * 1000)
                series["v1_first"].append(head * 1000)
            for _ in range(BLOCK * sdk_turns // turns):
                total, head = sdk_turn(client, sids["sdk"], sdk_events)
                series["sdk"].append(total * 1000)
                series["sdk_first"].append(head * 1000)
            for _ in range(BLOCK):
                series["http"].append(health(server.port) * 1000)
        ws_label = "WebSocket: send_prompt → result"
        result["rows"] = [
            row(
                "/v1/ turn: POST user.message → berth.turn_result (raw SSE client)",
                "ms",
                series["v1"],
                ws_label,
                series["ws"],
            ),
            row(
                "/v1/ first token: POST → first event_delta (raw SSE client)",
                "ms",
                series["v1_first"],
                "WebSocket: send_prompt → first stream frame",
                series["ws_first"],
            ),
            row(
                "/v1/ turn through the anthropic SDK (send + stream)",
                "ms",
                series["sdk"],
                ws_label,
                series["ws"],
            ),
            row(
                "/v1/ first token through the anthropic SDK",
                "ms",
                series["sdk_first"],
                "WebSocket first token",
                series["ws_first"],
            ),
            row(
                "WebSocket turn: send_prompt → result",
                "ms",
                series["ws"],
                "bare HTTP exchange (GET /api/health, new connection)",
                series["http"],
            ),
        ]
        result["samples"] = series
        result["extra"] = {"turns": turns, "sdk_turns": len(series["sdk"]), "warmup": warmup}
    finally:
        for closer in closers:
            try:
                closer.close()
            except Exception:
                pass
        for agent in agents:
            agent.stop(timeout=20)
        server.stop()
        result["steal"] = steal.stop()
    rows = result["rows"]
    v1, ws_p50 = rows[0]["stats"]["median"], rows[0]["floor_stats"]["median"]
    first = rows[1]["stats"]["median"]
    result["verdicts"] = [
        {
            "target": "/v1/ turn p50 ≤ 3 × WebSocket turn p50",
            "value": f"{v1:.2f} vs {ws_p50:.2f} ms",
            "ok": v1 <= 3 * ws_p50,
        },
        {"target": "/v1/ first token p50 ≤ 5 ms", "value": f"{first:.2f} ms", "ok": first <= 5.0},
    ]
    return result
