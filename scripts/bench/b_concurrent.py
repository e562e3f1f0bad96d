"""6. Concurrent creates: 20 sessions created at once, real containers, cold.

20 threads POST ``/api/sessions`` at the same moment against ``berth serve``
(Docker runtime, ``--max-sessions 50``); the watcher subscribes to each
session as soon as its POST answers. The run ends when every session is
``idle``, or ended (error/terminated), or after a timeout; statuses are
counted. "All ready" is the time from the first POST to the last ``idle``.
Then all are deleted and their containers waited out.

Floor (same run, alternating): 20 bare containers of the same image started
at once through the Docker SDK (20 threads), each running the agent's
start-up equivalent; "all up" when the last one connects back. Berth's
ContainerActor runs Docker calls on ``container_workers`` (8) threads.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scripts.bench.common import (
    Context,
    Server,
    StealMeter,
    docker_client,
    remove_instance_containers,
    row,
    start_berth_serve,
    summarize,
    wait_containers_gone,
)
from scripts.bench.lifecycle import IMAGE, Arrivals, Watcher, secrets_dir, start_floor_container

TITLE = "Concurrent creates (20 sessions at once, real containers, cold)"
N = 20
TIMEOUT = 240.0


def berth_burst(server: Server, watcher: Watcher, client: Any, instance: str) -> dict[str, Any]:
    t0 = time.perf_counter()

    def create(i: int) -> str:
        sid = server.create_session(f"burst-{i}")
        watcher.subscribe(sid)
        return sid

    with ThreadPoolExecutor(N) as pool:
        sids = list(pool.map(create, range(N)))
    posted = time.perf_counter() - t0
    deadline = time.monotonic() + TIMEOUT
    statuses: dict[str, int] = {}
    ready: list[float] = []
    for sid in sids:
        status, when = watcher.wait(sid, "idle", max(0.0, deadline - time.monotonic()))
        statuses[status] = statuses.get(status, 0) + 1
        if when is not None:
            ready.append(when - t0)
    out: dict[str, Any] = {
        "statuses": statuses,
        "posts_s": posted,
        "per_session_s": ready,
        "reasons": sorted({watcher.reasons[s] for s in sids if s in watcher.reasons}),
    }
    if len(ready) == N:
        out["all_ready_s"] = max(ready)
    for sid in sids:
        watcher.unsubscribe(sid)
    with ThreadPoolExecutor(N) as pool:
        list(pool.map(server.delete_session, sids))
    out["containers_gone"] = wait_containers_gone(client, f"berth.instance={instance}", timeout=180)
    return out


def floor_burst(client: Any, instance: str, arrivals: Arrivals, secrets: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(N) as pool:
        started = list(
            pool.map(lambda _: start_floor_container(client, instance, arrivals.port, secrets), range(N))
        )
    ups = [arrivals.wait(name, TIMEOUT) for _c, name in started]
    ready = [u - t0 for u in ups if u is not None]
    with ThreadPoolExecutor(N) as pool:
        list(pool.map(lambda c: c[0].remove(force=True), started))
    out: dict[str, Any] = {"up": len(ready), "per_container_s": ready}
    if len(ready) == N:
        out["all_up_s"] = max(ready)
    return out


def run(ctx: Context) -> dict[str, Any]:
    repeats = 1 if ctx.quick else 3
    result: dict[str, Any] = {"id": "concurrent", "title": TITLE}
    client = docker_client()
    client.images.get(IMAGE)
    steal = StealMeter()
    iid = ctx.instance("burst")
    server = start_berth_serve(ctx.workdir, iid, max_sessions=50)
    ctx.note_command(server.argv)
    watcher: Watcher | None = None
    arrivals = Arrivals()
    secrets = secrets_dir(ctx.workdir)
    bursts: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    try:
        watcher = Watcher(server)
        for i in range(repeats):
            order = ("berth", "floor") if i % 2 == 0 else ("floor", "berth")
            for kind in order:
                if kind == "berth":
                    got = berth_burst(server, watcher, client, iid)
                    bursts.append(got)
                    ctx.log(
                        f"concurrent: Berth burst {i + 1}/{repeats}: {got['statuses']}, all ready in "
                        f"{got.get('all_ready_s', float('nan')):.2f} s"
                    )
                else:
                    got = floor_burst(client, iid, arrivals, secrets)
                    floors.append(got)
                    ctx.log(
                        f"concurrent: floor burst {i + 1}/{repeats}: {got['up']}/{N} up in "
                        f"{got.get('all_up_s', float('nan')):.2f} s"
                    )
    finally:
        if watcher is not None:
            watcher.close()
        arrivals.close()
        server.stop(timeout=180)
        remove_instance_containers(client, iid)
        result["steal"] = steal.stop()
    all_ready = [1000 * b["all_ready_s"] for b in bursts if "all_ready_s" in b]
    all_up = [1000 * f["all_up_s"] for f in floors if "all_up_s" in f]
    per_session = [1000 * s for b in bursts for s in b["per_session_s"]]
    per_container = [1000 * s for f in floors for s in f["per_container_s"]]
    result["rows"] = [
        row(
            f"Berth: all {N} ready (first POST → last idle)",
            "ms",
            all_ready,
            f"{N} bare docker runs at once",
            all_up,
        ),
        row(
            "Berth: each session's create → ready within the burst",
            "ms",
            per_session,
            "each bare container within the burst",
            per_container,
        ),
    ]
    totals: dict[str, int] = {}
    for b in bursts:
        for status, n in b["statuses"].items():
            totals[status] = totals.get(status, 0) + n
    good = totals.get("idle", 0) == N * len(bursts)
    result["verdicts"] = [
        {
            "target": f"{N} concurrent creates all ready, none timed out",
            "value": ", ".join(f"{n} {s}" for s, n in sorted(totals.items())),
            "ok": good,
        }
    ]
    result["extra"] = {
        "status_totals": totals,
        "reasons": sorted({r for b in bursts for r in b["reasons"]}),
        "median_all_ready_ms": summarize(all_ready).get("median"),
        "repeats": repeats,
        "posts_s": [b["posts_s"] for b in bursts],
    }
    result["samples"] = {"bursts": bursts, "floors": floors}
    result["previous"] = "—"
    return result
