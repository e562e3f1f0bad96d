"""2. Create → ready, warm: the same measurement against ``berth serve --warm 2``.

Before every create the benchmark waits until the pool is ready: two pooled
containers running in which an agent process (the container's processes from
``docker top``, seen from the host; the agent runs as a supervisor and a
worker) holds an established TCP connection to the server's port, plus a
short settling pause. After each run the session is deleted and its container
waited out, so every create finds a full pool.

Floor (same run, alternating): a bare WebSocket handshake to the same
server's ``/ws`` endpoint (connect + 101 + close) with websocket-client: the
least any "tell the server, hear back over a socket" can cost here.

If the pool never becomes ready the benchmark reports "not measured" with
what the pooled containers did (exit codes, last log lines).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import websocket

from scripts.bench.b_cold import berth_once
from scripts.bench.common import (
    Context,
    StealMeter,
    docker_client,
    established_sockets,
    inspect,
    list_containers,
    remove_instance_containers,
    row,
    start_berth_serve,
    summarize,
)
from scripts.bench.lifecycle import IMAGE, Watcher

TITLE = "Create → ready, warm (`--warm 2`: a create claims a pre-started container)"
POOL_SIZE = 2


def pool_state(client: Any, instance: str, port: int, seen: dict[str, Any]) -> int:
    """How many pooled containers have a connected agent; records exits in ``seen``."""
    ready = 0
    for listed in list_containers(client, f"berth.instance={instance}"):
        slot = (listed.get("Labels") or {}).get("berth.session", "")
        if not slot.startswith("pool-"):
            continue
        seen.setdefault("slots", set()).add(slot)
        attrs = inspect(client, listed["Id"])
        if attrs is None:
            continue
        state = attrs.get("State", {})
        if state.get("Running") and any(
            established_sockets(pid, port) for pid in _pids(client, listed["Id"])
        ):
            ready += 1
        elif state.get("Status") in ("exited", "dead") and slot not in seen.setdefault("exits", {}):
            try:
                raw = client.api.logs(listed["Id"], tail=6)
                logs = raw.decode(errors="replace").strip().splitlines()
            except Exception as exc:
                logs = [f"(logs unavailable: {exc})"]
            seen["exits"][slot] = {"exit_code": state.get("ExitCode"), "logs": logs[-6:]}
    return ready


def _pids(client: Any, container_id: str) -> list[int]:
    """Host pids of every process in the container (the agent runs as a supervisor + worker)."""
    try:
        top = client.api.top(container_id)
    except Exception:
        return []
    column = top.get("Titles", []).index("PID") if "PID" in top.get("Titles", []) else 1
    return [int(row[column]) for row in top.get("Processes") or [] if str(row[column]).isdigit()]


def wait_pool(client: Any, instance: str, port: int, timeout: float, seen: dict[str, Any]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool_state(client, instance, port, seen) >= POOL_SIZE:
            time.sleep(0.3)  # the server handles the attach right after the handshake
            return True
        time.sleep(0.1)
    return False


def handshake(url: str, token: str) -> float:
    t0 = time.perf_counter()
    ws = websocket.create_connection(
        url, header=[f"Authorization: Bearer {token}"], skip_utf8_validation=True
    )
    took = time.perf_counter() - t0
    ws.close()
    return took


def run(ctx: Context) -> dict[str, Any]:
    repeats = 3 if ctx.quick else 12
    result: dict[str, Any] = {"id": "warm", "title": TITLE}
    client = docker_client()
    client.images.get(IMAGE)
    steal = StealMeter()
    iid = ctx.instance("warm")
    server = start_berth_serve(ctx.workdir, iid, warm=POOL_SIZE)
    ctx.note_command(server.argv)
    watcher: Watcher | None = None
    berth_runs: list[dict[str, Any]] = []
    floor: list[float] = []
    seen: dict[str, Any] = {}
    try:
        watcher = Watcher(server)
        ctx.log(f"warm: waiting for {POOL_SIZE} pooled agents to connect")
        if not wait_pool(client, iid, server.port, timeout=60 if ctx.quick else 120, seen=seen):
            result["status"] = "not measured"
            exits = seen.get("exits", {})
            codes = Counter(str(e["exit_code"]) for e in exits.values())
            lines = Counter(
                line.split(" ", 2)[-1]
                for e in exits.values()
                for line in e["logs"][-1:]
                if "unavailable" not in line
            )
            result["reason"] = (
                f"the warm pool never had {POOL_SIZE} agents connected within the wait: "
                f"{len(seen.get('slots', ()))} pooled containers were started, {len(exits)} seen exiting "
                f"(exit codes {dict(codes)}); their agent's last log line: "
                + "; ".join(f"{text!r} ×{n}" for text, n in lines.most_common(2))
            )
            # One create anyway, to show what a client gets meanwhile.
            probe = berth_once(server, watcher, client, timeout=120)
            result["extra"] = {
                "pooled_containers_started": len(seen.get("slots", ())),
                "pool_exits_seen": len(exits),
                "pool_exit_examples": dict(list(exits.items())[:3]),
                "create_while_pool_not_ready": probe,
            }
            ctx.log(f"warm: NOT MEASURED: {result['reason'][:300]}")
            return result
        ctx.log(f"warm: {repeats} runs each of Berth (pool full before each) and a bare WebSocket handshake")
        for i in range(-1, repeats):
            if not wait_pool(client, iid, server.port, timeout=120, seen=seen):
                raise RuntimeError("the warm pool did not refill within 120 s")
            took = handshake(server.ws + "/ws", server.api_token)
            got = berth_once(server, watcher, client, timeout=60)
            if i >= 0:
                floor.append(1000 * took)
                berth_runs.append(got)
            ctx.log(f"warm: berth {got['status']} {1000 * got.get('total_s', float('nan')):.1f} ms")
    finally:
        if watcher is not None:
            watcher.close()
        server.stop(timeout=120)
        remove_instance_containers(client, iid)
        result["steal"] = steal.stop()
    ok = [1000 * r["total_s"] for r in berth_runs if r["status"] == "idle"]
    result["rows"] = [
        row("Berth create → ready (warm pool)", "ms", ok, "bare WebSocket handshake to the server", floor),
        row("REST POST /api/sessions answered", "ms", [1000 * r["post_s"] for r in berth_runs]),
    ]
    med = summarize(ok).get("median", float("nan"))
    failed = [r for r in berth_runs if r["status"] != "idle"]
    result["verdicts"] = [
        {
            "target": "warm create→ready p50 ≤ 100 ms",
            "value": f"{med:.1f} ms",
            "ok": med <= 100 and not failed,
        }
    ]
    result["extra"] = {"failed_runs": failed, "repeats": repeats}
    result["samples"] = {"berth": berth_runs, "floor_ms": floor}
    result["previous"] = "4.1 s (no pool)"
    return result
