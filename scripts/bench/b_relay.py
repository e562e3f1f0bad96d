"""4. Token relay: ``/stream 10000`` from the agent to one subscribed client.

Set-up as the turn benchmark (bootstrap server process, ExternalRuntime, the
real agent on the host with the builtin runner). The client is the raw-socket
client of ``wsraw.py``: it decodes only ``stream`` frames (a msgspec struct
with just ``tokens``) and checks that the concatenated tokens are exactly
``t0 t1 … t9999`` in order (none lost, none duplicated, none reordered).
Rate = 10,000 / (send_prompt → arrival of the last token).

Server cost: utime+stime of the server process (/proc/<pid>/stat) over all
measured runs divided by the tokens relayed; the agent's likewise.

Floor (the client's own ceiling, same run): the same frames, byte for byte
(recorded from a Berth run), written in one ``sendall`` by a bare raw-socket
server (``floors.py replay``) and received by the identical client code; and,
for reference, by websocket-client's ``recv_data`` loop.

The real agent's link coalesces the runner's tokens into a few large frames,
which hardly exercises the server's per-frame path; a second workload
(``fake_agent.py``: 10,000 single-token frames written at once by a raw-socket
agent in its own process) measures that path, with its own client ceiling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import websocket

from scripts.bench import profile
from scripts.bench.common import (
    Context,
    Process,
    Server,
    StealMeter,
    cpu_seconds,
    python,
    row,
    start_boot_server,
    start_host_agent,
)
from scripts.bench.wsraw import RawWebSocket

TOKENS = 10_000
STREAM = b'{"type":"stream"'
RESULT = b'{"type":"result"'
TITLE = "Token relay (agent `/stream 10000` → one subscribed client)"


class _Stream(msgspec.Struct):
    tokens: list[str]


_decode_stream = msgspec.json.Decoder(_Stream).decode


def expected_text(count: int) -> str:
    return "".join(f"t{i} " for i in range(count))


def receive_stream(recv_many: Callable[[], list[bytes]], expected: str, keep: bool = False) -> dict[str, Any]:
    """Read until a ``result`` frame; count and check the streamed tokens."""
    perf = time.perf_counter
    offset = count = frames = 0
    first = last = 0.0
    in_order = True
    kept: list[bytes] = []
    while True:
        for payload in recv_many():
            if payload.startswith(STREAM):
                tokens = _decode_stream(payload).tokens
                joined = "".join(tokens)
                if in_order and not expected.startswith(joined, offset):
                    in_order = False
                offset += len(joined)
                count += len(tokens)
                frames += 1
                last = perf()
                if not first:
                    first = last
                if keep:
                    kept.append(payload)
            elif payload.startswith(RESULT):
                complete = in_order and offset == len(expected)
                return {
                    "tokens": count,
                    "frames": frames,
                    "first": first,
                    "last": last,
                    "ok": complete,
                    "payloads": kept,
                }


def _ws_client_recv_many(ws: websocket.WebSocket) -> Callable[[], list[bytes]]:
    def recv_many() -> list[bytes]:
        return [ws.recv_data()[1]]

    return recv_many


def _measure(
    client: RawWebSocket, prompt: bytes, expected: str, warmup: int, repeats: int, pids: list[int]
) -> dict[str, Any]:
    """Timed streams: rates (send_prompt → last token), frames, CPU of ``pids``, the last run's frames."""
    for _ in range(warmup):
        client.send_text(prompt)
        receive_stream(client.recv_many, expected)
    rates: list[float] = []
    frames: list[int] = []
    failures = 0
    payloads: list[bytes] = []
    cpu0 = [cpu_seconds(pid) for pid in pids]
    for i in range(repeats):
        t0 = time.perf_counter()
        client.send_text(prompt)
        got = receive_stream(client.recv_many, expected, keep=(i == repeats - 1))
        if not got["ok"] or got["tokens"] != TOKENS:
            failures += 1
        rates.append(got["tokens"] / (got["last"] - t0))
        frames.append(got["frames"])
        if got["payloads"]:
            payloads = got["payloads"]
    cpu = [cpu_seconds(pid) - c0 for pid, c0 in zip(pids, cpu0, strict=True)]
    return {
        "rates": rates,
        "frames": frames,
        "failures": failures,
        "payloads": payloads,
        "cpu_us_per_token": [1e6 * c / (TOKENS * repeats) for c in cpu],
    }


def _client(server: Server, sid: str) -> RawWebSocket:
    client = RawWebSocket("127.0.0.1", server.port, "/ws", [f"Authorization: Bearer {server.api_token}"])
    client.settimeout(60)
    client.send_text(json.dumps({"type": "subscribe", "sessionId": sid}).encode())
    _wait_idle(client)
    return client


def _one_token_frames(payloads: list[bytes]) -> list[bytes]:
    """The stream frames the client got, split back into one frame per token."""
    out: list[bytes] = []
    for payload in payloads:
        if not payload.startswith(STREAM):
            out.append(payload)
            continue
        frame = json.loads(payload)
        for token in frame["tokens"]:
            out.append(json.dumps({**frame, "tokens": [token]}, separators=(",", ":")).encode())
    return out


def _replay_ceiling(
    ctx: Context,
    name: str,
    payloads: list[bytes],
    expected: str,
    warmup: int,
    repeats: int,
    closers: list[Any],
) -> tuple[list[float], list[float]]:
    """(raw client, websocket-client) rates receiving ``payloads`` from a bare sender."""
    frames_file = ctx.workdir / f"relay-frames-{name}.json"
    frames_file.write_text(json.dumps([p.decode() for p in payloads]))
    replay = Process(
        [python(), "-m", "scripts.bench.floors", "replay", "--frames", str(frames_file)],
        ctx.workdir / f"floor-replay-{name}.log",
    )
    closers.append(replay.stop)
    ctx.note_command(replay.argv)
    port = int(replay.expect("listening ", 30).split()[1])
    raw = RawWebSocket("127.0.0.1", port, "/")
    closers.append(raw.close)
    raw.settimeout(60)
    ceiling = _ceiling(lambda: raw.send_text(b"go"), raw.recv_many, expected, warmup, repeats)
    wsc = websocket.create_connection(f"ws://127.0.0.1:{port}/", skip_utf8_validation=True, timeout=60)
    closers.append(wsc.close)
    ws_ceiling = _ceiling(lambda: wsc.send("go"), _ws_client_recv_many(wsc), expected, warmup, repeats)
    return ceiling, ws_ceiling


def run(ctx: Context) -> dict[str, Any]:
    repeats = 5 if ctx.quick else 30
    warmup = 2 if ctx.quick else 5
    result: dict[str, Any] = {"id": "relay", "title": TITLE}
    steal = StealMeter()
    expected = expected_text(TOKENS)
    server = start_boot_server(ctx.workdir, ctx.instance("relay"))
    ctx.note_command(server.process.argv)
    closers: list[Callable[[], Any]] = []
    try:
        # Workload A: the real agent (builtin runner; its link coalesces tokens into frames).
        sid = server.create_session("relay")
        token = server.tokens(ctx.workdir / "tokens-relay.json")[sid]
        agent = start_host_agent(ctx.workdir, server, sid, token, "relay")
        closers.append(lambda: agent.stop(timeout=20))
        client = _client(server, sid)
        closers.append(client.close)
        prompt = json.dumps(
            {"type": "send_prompt", "sessionId": sid, "content": f"/stream {TOKENS}"}
        ).encode()
        ctx.log(f"relay: real agent: warm-up {warmup} + {repeats} streams of {TOKENS} tokens")
        real = _measure(client, prompt, expected, warmup, repeats, [server.pid, agent.pid])
        ceiling, ws_ceiling = _replay_ceiling(
            ctx, "real", real["payloads"], expected, warmup, repeats, closers
        )

        # Workload B: one token per frame (fake_agent.py), the server's per-frame relay path.
        sid_b = server.create_session("relay-per-frame")
        token_b = server.tokens(ctx.workdir / "tokens-relay-b.json")[sid_b]
        fake = Process(
            [python(), "-m", "scripts.bench.fake_agent", "--port", str(server.port), "--session", sid_b],
            ctx.workdir / "fake-agent.log",
        )
        closers.append(fake.stop)
        ctx.note_command(fake.argv)
        fake.tell(token_b)
        fake.expect("ready", 30)
        client_b = _client(server, sid_b)
        closers.append(client_b.close)
        prompt_b = json.dumps(
            {"type": "send_prompt", "sessionId": sid_b, "content": f"/stream {TOKENS}"}
        ).encode()
        ctx.log(f"relay: one token per frame: warm-up {warmup} + {repeats} streams of {TOKENS} frames")
        single = _measure(client_b, prompt_b, expected, warmup, repeats, [server.pid])
        # The ceiling stays the client receiving ONE token per frame, as the agent sent
        # them: the server merging a read's tokens into fewer frames is what is measured.
        one_each = _one_token_frames(single["payloads"])
        ceiling_b, _ = _replay_ceiling(ctx, "single", one_each, expected, warmup, repeats, closers)

        result["rows"] = [
            row(
                "Berth tokens/s, real agent (send_prompt → last token)",
                "tokens/s",
                real["rates"],
                "client ceiling: the same frames from a bare sender",
                ceiling,
                higher_is_better=True,
            ),
            row(
                "Berth tokens/s, one token per frame (fake agent)",
                "tokens/s",
                single["rates"],
                "client ceiling: the same 10,000 frames from a bare sender",
                ceiling_b,
                higher_is_better=True,
            ),
            row(
                "reference: websocket-client receiving the real agent's frames",
                "tokens/s",
                ws_ceiling,
                higher_is_better=True,
            ),
        ]
        frames = real["frames"]
        result["extra"] = {
            "server_cpu_us_per_token": real["cpu_us_per_token"][0],
            "agent_cpu_us_per_token": real["cpu_us_per_token"][1],
            "server_cpu_us_per_token_single": single["cpu_us_per_token"][0],
            "frames_per_stream_median": sorted(frames)[len(frames) // 2],
            "tokens_per_frame": TOKENS / (sum(frames) / len(frames)),
            "runs_with_lost_or_reordered_tokens": real["failures"] + single["failures"],
            "repeats": repeats,
        }
        result["samples"] = {
            "real": real["rates"],
            "real_frames": frames,
            "ceiling": ceiling,
            "ws_client": ws_ceiling,
            "single": single["rates"],
            "ceiling_single": ceiling_b,
        }
        if ctx.profile and profile.available():
            result["profile"] = _profile(ctx, server.pid, client, prompt, expected, "relay")
            result["profile_single"] = _profile(ctx, server.pid, client_b, prompt_b, expected, "relay-single")
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception:
                pass
        server.stop()
        result["steal"] = steal.stop()
    median = result["rows"][0]["stats"]["median"]
    extra = result["extra"]
    bad = extra["runs_with_lost_or_reordered_tokens"]
    result["verdicts"] = [
        {
            "target": "token relay ≥ 30,000 tokens/s to one client",
            "value": f"{median:,.0f} tokens/s",
            "ok": median >= 30_000,
        },
        {"target": "no token lost or reordered", "value": f"{bad} bad runs of {2 * repeats}", "ok": bad == 0},
    ]
    result["previous"] = "~7,000 tokens/s"
    return result


def _wait_idle(client: RawWebSocket, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for data in client.recv_many():
            if (
                data.startswith((b'{"type":"session_update"', b'{"type":"snapshot"'))
                and b'"status":"idle"' in data
            ):
                return
    raise TimeoutError("session not idle")


def _ceiling(
    go: Callable[[], None], recv_many: Callable[[], list[bytes]], expected: str, warmup: int, repeats: int
) -> list[float]:
    rates = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        go()
        got = receive_stream(recv_many, expected)
        if not got["ok"]:
            raise RuntimeError("the replayed frames did not check out: the recording is broken")
        if i >= warmup:
            rates.append(got["tokens"] / (got["last"] - t0))
    return rates


def _profile(
    ctx: Context, pid: int, client: RawWebSocket, prompt: bytes, expected: str, name: str
) -> dict[str, Any]:
    duration = 6.0 if ctx.quick else 10.0
    ctx.log(f"{name}: py-spy on the server for {duration:g} s of back-to-back streams (not measured)")
    rec = profile.record(pid, ctx.results_dir / f"profile-{name}", duration)
    for command in rec.commands:
        ctx.note_command(command)
    deadline = time.monotonic() + duration + 1.5
    streams = 0
    while time.monotonic() < deadline:
        client.send_text(prompt)
        receive_stream(client.recv_many, expected)
        streams += 1
    summary = rec.wait(timeout=60)
    summary["streams"] = streams
    return summary
