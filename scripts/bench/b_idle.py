"""5. Idle sessions: server RSS and threads at 0, 100 and 1,000 connected idle sessions.

The server is the bootstrap process (``berth serve --runtime external``
equivalent, no session limit). Sessions are created over REST; their tokens
come from the bootstrap; ONE load process (``agents_load.py``) opens every
agent's WebSocket (raw sockets, hand-written handshake), sends ``ready`` and
then only answers pings. A level counts once every session reports ``idle``;
RSS (VmRSS), threads and open fds of the server are then sampled a few times
after a settling pause and the median taken.

Floor (same run): a bare werkzeug + simple-websocket server (``floors.py
echo``) holding the same number of idle connections from the same load
process: what the server stack itself costs per connection.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import (
    Context,
    Process,
    Server,
    StealMeter,
    cpu_split,
    fd_count,
    proc_status,
    python,
    raise_fd_limit,
    start_boot_server,
    summarize,
)

TITLE = "Idle sessions (server memory and threads per connected idle session)"


def _sample(pid: int, settle: float, samples: int = 5) -> dict[str, float]:
    time.sleep(settle)
    rss, threads, fds = [], [], []
    for _ in range(samples):
        status = proc_status(pid)
        rss.append(status["VmRSS"] / 1024)
        threads.append(status["Threads"])
        fds.append(fd_count(pid))
        time.sleep(0.4)
    return {
        "rss_mb": summarize(rss)["median"],
        "threads": summarize(threads)["median"],
        "fds": summarize(fds)["median"],
    }


def _wait_idle(server: Server, wanted: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = server.statuses()
        if counts.get("idle", 0) >= wanted:
            return counts
        time.sleep(0.5)
    return counts


def _load(ctx: Context, port: int, name: str) -> Process:
    load = Process(
        [python(), "-m", "scripts.bench.agents_load", "--port", str(port)], ctx.workdir / f"load-{name}.log"
    )
    ctx.note_command(load.argv)
    return load


def _connect(load: Process, tokens_file: Path, timeout: float) -> tuple[int, int, float]:
    load.tell(f"connect {tokens_file}")
    _word, open_, failed, took = load.expect("connected ", timeout).split()
    return int(open_), int(failed), float(took)


def _berth_levels(ctx: Context, levels: list[int], repeat: int, hold: float) -> dict[str, Any]:
    # Agents connect once every session of a level exists: no session may time out meanwhile.
    instance = ctx.instance(f"idle{repeat}")
    server = start_boot_server(ctx.workdir, instance, max_sessions=0, startup_timeout=3600)
    ctx.note_command(server.process.argv)
    load = _load(ctx, server.port, f"berth{repeat}")
    out: dict[str, Any] = {"levels": {}, "statuses": {}}
    try:
        out["levels"][0] = _sample(server.pid, settle=2.0)
        created = previous = 0
        for level in levels[1:]:
            t0 = time.monotonic()
            while created < level:
                server.create_session(f"idle-{created}")
                created += 1
            create_s = time.monotonic() - t0
            ctx.log(f"idle: created sessions up to {level} at {(level - previous) / create_s:.0f}/s")
            previous = level
            tokens_file = ctx.workdir / f"tokens-idle{repeat}-{level}.json"
            server.tokens(tokens_file)
            open_, failed, connect_s = _connect(load, tokens_file, timeout=600)
            counts = _wait_idle(server, level, timeout=180)
            sample = _sample(server.pid, settle=3.0)
            sample.update(
                {
                    "create_s": create_s,
                    "connect_s": connect_s,
                    "open": open_,
                    "failed": failed,
                    "statuses": counts,
                }
            )
            out["levels"][level] = sample
            ctx.log(
                f"idle: {level} sessions: {sample['rss_mb']:.1f} MB RSS, {sample['threads']:.0f} threads, "
                f"statuses {counts}, created in {create_s:.1f} s, connected in {connect_s:.1f} s"
            )
        if hold > 0:
            ctx.log(f"idle: holding {levels[-1]} idle sessions for {hold:g} s")
            (user0, sys0), t0 = cpu_split(server.pid), time.monotonic()
            time.sleep(hold)
            user1, sys1 = cpu_split(server.pid)
            took = time.monotonic() - t0
            idle_cpu = (user1 - user0 + sys1 - sys0) / took
            out["idle_cpu_share"] = idle_cpu
            ctx.log(
                f"idle: server CPU while {levels[-1]} sessions idle: {idle_cpu * 100:.2f} % of a core "
                f"(user {(user1 - user0) / took * 100:.2f} %, system {(sys1 - sys0) / took * 100:.2f} %)"
            )
            out["after_hold"] = _sample(server.pid, settle=0.0)
            out["after_hold"]["statuses"] = server.statuses()
        load.tell("count")
        _w, open_now, _c, closed = load.expect("open ", 30).split()
        out["still_open"], out["closed_by_server"] = int(open_now), int(closed)
        out["server_alive"] = server.process.alive()
    finally:
        load.stop(timeout=30)
        server.stop(timeout=120)
    return out


def _floor_levels(ctx: Context, levels: list[int], repeat: int) -> dict[str, Any]:
    echo = Process([python(), "-m", "scripts.bench.floors", "echo"], ctx.workdir / f"floor-idle{repeat}.log")
    ctx.note_command(echo.argv)
    port = int(echo.expect("listening ", 30).split()[1])
    load = _load(ctx, port, f"floor{repeat}")
    out: dict[str, Any] = {"levels": {}}
    try:
        out["levels"][0] = _sample(echo.pid, settle=2.0)
        for level in levels[1:]:
            tokens_file = ctx.workdir / f"tokens-floor{repeat}-{level}.json"
            tokens_file.write_text(json.dumps({f"floor-{i}": "none" for i in range(level)}))
            open_, failed, connect_s = _connect(load, tokens_file, timeout=600)
            sample = _sample(echo.pid, settle=3.0)
            sample.update({"open": open_, "failed": failed, "connect_s": connect_s})
            out["levels"][level] = sample
    finally:
        load.stop(timeout=30)
        echo.stop(timeout=30)
    return out


def run(ctx: Context) -> dict[str, Any]:
    raise_fd_limit(1 << 20)
    #: e.g. BERTH_BENCH_IDLE_LEVELS=0,100,1000,10000 for the 10,000-session target.
    levels = [int(n) for n in os.environ.get("BERTH_BENCH_IDLE_LEVELS", "0,100,1000").split(",")]
    repeats = int(os.environ.get("BERTH_BENCH_IDLE_REPEATS", "1" if ctx.quick else "3"))
    hold = 5.0 if ctx.quick else 45.0
    top = levels[-1]
    #: The bare floor's thread-per-connection stack is held up to this level only
    #: (at 10,000 it would need 20,000 threads).
    floor_top = int(os.environ.get("BERTH_BENCH_IDLE_FLOOR_MAX", "1000"))
    floor_levels = [level for level in levels if level <= floor_top]
    result: dict[str, Any] = {"id": "idle", "title": TITLE}
    steal = StealMeter()
    runs: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    try:
        for repeat in range(repeats):
            ctx.log(f"idle: repeat {repeat + 1}/{repeats}: Berth at {levels} sessions, then the bare floor")
            runs.append(_berth_levels(ctx, levels, repeat, hold))
            floors.append(_floor_levels(ctx, floor_levels, repeat))
    finally:
        result["steal"] = steal.stop()

    def per_session(data: list[dict[str, Any]], key: str, level: int) -> list[float]:
        return [(r["levels"][level][key] - r["levels"][0][key]) / level for r in data]

    def at(data: list[dict[str, Any]], key: str, level: int) -> list[float]:
        return [r["levels"][level][key] for r in data]

    def floor_at(key: str, level: int) -> list[float] | None:
        return at(floors, key, level) if level in floor_levels else None

    def floor_per(key: str) -> list[float] | None:
        top_floor = floor_levels[-1]
        return per_session(floors, key, top_floor) if top_floor else None

    from scripts.bench.common import row

    rows = []
    for level in levels:
        rows.append(
            row(
                f"server RSS at {level} idle sessions",
                "MB",
                at(runs, "rss_mb", level),
                f"bare stack at {level} idle connections",
                floor_at("rss_mb", level),
            )
        )
    for level in levels[-1:]:
        rows.append(
            row(
                f"server threads at {level} idle sessions",
                "threads",
                at(runs, "threads", level),
                f"bare stack at {level} connections",
                floor_at("threads", level),
            )
        )
    rows.append(
        row(
            f"RSS per idle session ((RSS@{top} − RSS@0)/{top})",
            "MB",
            per_session(runs, "rss_mb", top),
            f"bare stack, per idle connection (at {floor_levels[-1]})",
            floor_per("rss_mb"),
        )
    )
    rows.append(
        row(
            "threads per idle session",
            "threads",
            per_session(runs, "threads", top),
            f"bare stack, per connection (at {floor_levels[-1]})",
            floor_per("threads"),
        )
    )
    result["rows"] = rows
    held = all(
        r["levels"][top]["statuses"].get("idle", 0) == top
        and r.get("after_hold", {}).get("statuses", {}).get("idle", top) == top
        and r["still_open"] == top
        and r["closed_by_server"] == 0
        and r["server_alive"]
        for r in runs
    )
    per = summarize(per_session(runs, "rss_mb", top))["median"]
    result["verdicts"] = [
        {"target": "≤ 0.2 MB RSS per idle session", "value": f"{per:.3f} MB", "ok": per <= 0.2},
        {
            "target": f"{top:,} idle sessions held by one server",
            "value": f"{sum(1 for r in runs if r['still_open'] == top)}/{len(runs)} runs: "
            + "; ".join(
                sorted(
                    {
                        f"{r['levels'][top]['statuses'].get('idle', 0)} idle, {r['still_open']} open after "
                        f"{hold:g} s, {r['closed_by_server']} closed by the server"
                        for r in runs
                    }
                )
            ),
            "ok": held,
        },
    ]
    result["extra"] = {"runs": runs, "floors": floors}
    result["previous"] = "~85 MB RSS"
    return result
