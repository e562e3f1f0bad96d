"""1. Create → ready, cold: ``POST /api/sessions`` until the client sees ``idle``.

``berth serve --port 0 --api-token-file F --state-dir D --instance I`` runs in
a subprocess (Docker runtime, no warm pool). The client subscribes over the
client WebSocket right after the POST answers and the run ends when the
``session_update`` (or snapshot) with status ``idle`` arrives; the session is
then deleted and the benchmark waits until its container is gone, so runs
never overlap.

Floor (same run, alternating with Berth runs so that drift hits both): the
same image started through the Docker SDK with Berth's container options,
running the agent's start-up equivalent (see ``lifecycle.py``).

From Docker's own timestamps (Created, State.StartedAt) each run is split
into "before the container exists", "Docker create → started" and "started →
ready", for Berth and the floor alike.
"""

from __future__ import annotations

import time
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
from scripts.bench.lifecycle import (
    IMAGE,
    Arrivals,
    Watcher,
    container_times,
    docker_time,
    secrets_dir,
    session_container,
    start_floor_container,
)

TITLE = "Create → ready, cold (REST create until the client sees `idle`)"


def berth_once(server: Server, watcher: Watcher, client: Any, timeout: float) -> dict[str, Any]:
    w0, t0 = time.time(), time.perf_counter()
    sid = server.create_session("bench")
    t_post = time.perf_counter()
    watcher.subscribe(sid)
    status, t_ready = watcher.wait(sid, "idle", timeout)
    out: dict[str, Any] = {"sid": sid, "status": status, "post_s": t_post - t0}
    if t_ready is not None:
        out["total_s"] = t_ready - t0
    container_id = session_container(client, sid)
    if container_id is not None:
        created, started = container_times(client, container_id)
        if created and started:
            out["to_created_s"] = created - w0
            out["to_started_s"] = started - w0
        connected = _agent_connected_at(client, container_id)
        if connected:
            out["to_agent_connected_s"] = connected - w0
    if status != "idle":
        out["reason"] = watcher.reasons.get(sid)
    watcher.unsubscribe(sid)
    server.delete_session(sid)
    if not wait_containers_gone(client, f"berth.session={sid}", timeout=60):
        out["container_left"] = True
    return out


def _agent_connected_at(client: Any, container_id: str) -> float | None:
    """When the agent logged its first "connected to" (Docker's log timestamp), Unix seconds."""
    try:
        raw = client.api.logs(container_id, timestamps=True).decode(errors="replace")
    except Exception:
        return None
    for line in raw.splitlines():
        if "connected to ws" in line:
            return docker_time(line.split(" ", 1)[0])
    return None


def floor_once(
    client: Any, instance: str, arrivals: Arrivals, secrets: Any, timeout: float
) -> dict[str, Any]:
    w0, t0 = time.time(), time.perf_counter()
    container, name = start_floor_container(client, instance, arrivals.port, secrets)
    t_api = time.perf_counter()
    t_up = arrivals.wait(name, timeout)
    out: dict[str, Any] = {"name": name, "api_s": t_api - t0, "status": "up" if t_up else "timeout"}
    if t_up is not None:
        out["total_s"] = t_up - t0
    created, started = container_times(client, container.id)
    if created and started:
        out["to_created_s"] = created - w0
        out["to_started_s"] = started - w0
    container.remove(force=True)
    return out


def breakdown(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians of the phases, in ms."""
    ok = [r for r in runs if "total_s" in r and "to_started_s" in r]

    def med(values: list[float]) -> float:
        return float(summarize(values).get("median", float("nan")))

    phases = {
        "before_container_created_ms": 1000 * med([r["to_created_s"] for r in ok]),
        "docker_created_to_started_ms": 1000 * med([r["to_started_s"] - r["to_created_s"] for r in ok]),
        "started_to_ready_ms": 1000 * med([r["total_s"] - r["to_started_s"] for r in ok]),
    }
    linked = [r for r in ok if "to_agent_connected_s" in r]
    if linked:
        phases["started_to_agent_connected_ms"] = 1000 * med(
            [r["to_agent_connected_s"] - r["to_started_s"] for r in linked]
        )
        phases["agent_connected_to_ready_ms"] = 1000 * med(
            [r["total_s"] - r["to_agent_connected_s"] for r in linked]
        )
    return phases


IMPORT_PROBE = "import time; t = time.perf_counter(); import agent.app; print(time.perf_counter() - t)"


def import_time_ms(client: Any, instance: str, runs: int = 3) -> float:
    """How long ``import agent.app`` takes inside the image (median of a few containers)."""
    took = []
    for _ in range(runs):
        out = client.containers.run(
            IMAGE,
            ["python3", "-c", IMPORT_PROBE],
            remove=True,
            network_mode="host",
            user="1000:1000",
            labels={"berth.app": "berth-bench-floor", "berth.instance": instance},
        )
        took.append(1000 * float(out.decode().strip().splitlines()[-1]))
    return float(summarize(took)["median"])


def run(ctx: Context) -> dict[str, Any]:
    repeats = 3 if ctx.quick else 12
    result: dict[str, Any] = {"id": "cold", "title": TITLE}
    client = docker_client()
    client.images.get(IMAGE)
    steal = StealMeter()
    iid = ctx.instance("cold")
    server = start_berth_serve(ctx.workdir, iid)
    ctx.note_command(server.argv)
    watcher: Watcher | None = None
    arrivals = Arrivals()
    secrets = secrets_dir(ctx.workdir)
    berth_runs: list[dict[str, Any]] = []
    floor_runs: list[dict[str, Any]] = []
    try:
        watcher = Watcher(server)
        ctx.log(f"cold: 1 warm-up + {repeats} runs each of Berth and the bare-docker floor, alternating")
        for i in range(-1, repeats):
            order = ("berth", "floor") if i % 2 == 0 else ("floor", "berth")
            for kind in order:
                if kind == "berth":
                    got = berth_once(server, watcher, client, timeout=180)
                    if i >= 0:
                        berth_runs.append(got)
                else:
                    got = floor_once(client, iid, arrivals, secrets, timeout=120)
                    if i >= 0:
                        floor_runs.append(got)
                ctx.log(
                    f"cold: {'warm-up ' if i < 0 else ''}{kind}: {got.get('status')} "
                    f"{1000 * got.get('total_s', float('nan')):.0f} ms"
                )
        imports_ms = import_time_ms(client, iid)
    finally:
        if watcher is not None:
            watcher.close()
        arrivals.close()
        server.stop(timeout=120)
        remove_instance_containers(client, iid)
        result["steal"] = steal.stop()
    ok = [1000 * r["total_s"] for r in berth_runs if r["status"] == "idle"]
    floor = [1000 * r["total_s"] for r in floor_runs if "total_s" in r]
    overhead = [a - b for a, b in zip(ok, floor, strict=False)]
    result["rows"] = [
        row(
            "Berth create → ready (cold)",
            "ms",
            ok,
            "bare docker run (SDK create+start → agent imports → connect)",
            floor,
        ),
        row("Berth overhead (Berth run − floor run, paired)", "ms", overhead),
        row("REST POST /api/sessions answered", "ms", [1000 * r["post_s"] for r in berth_runs]),
    ]
    failed = [r for r in berth_runs if r["status"] != "idle"]
    med_b = summarize(ok).get("median", float("nan"))
    med_f = summarize(floor).get("median", float("nan"))
    ratio = med_b / med_f if med_f else float("nan")
    result["verdicts"] = [
        {
            "target": "cold create→ready ≤ 1.05 × bare docker run",
            "value": f"{ratio:.3f}× ({med_b - med_f:+.0f} ms)",
            "ok": ratio <= 1.05 and not failed,
        }
    ]
    result["extra"] = {
        "berth_breakdown": breakdown(berth_runs),
        "floor_breakdown": breakdown(floor_runs),
        "failed_runs": failed,
        "repeats": repeats,
        "agent_app_import_ms": imports_ms,
    }
    result["samples"] = {"berth": berth_runs, "floor": floor_runs}
    result["previous"] = "4.1 s (3.9 s of it Docker)"
    return result
