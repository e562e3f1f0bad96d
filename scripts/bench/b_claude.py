"""8. Claude Code for real: first token and turn round trip of the real CLI through Berth.

Everything runs offline in one loopback-only network namespace (a holder
container with ``--network none``; ``scripts/bench/claude_run.py`` joins it
with ``nsenter``, and the session containers join it too), against the fake
Messages API (``tests/fake_messages_api.py``): the server, the SDK image's
sessions, and the floor, which is the same bundled CLI driven directly by
``ClaudeSDKClient`` on the host with the runner's options.

Measured: cold session (REST create with the prompt sent at once → first
token, with its parts: container start from Docker's timestamps, CLI start
from the agent's log), warm-pool session (first prompt of a claimed session
→ first token, and create → idle), warm turns (prompt → first token, prompt
→ result), the container's memory with the CLI running and parked, and the
first turn after parking (the CLI resumes the conversation).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from scripts.bench.common import REPO, Context, docker_client, row, summarize

TITLE = "Claude Code for real: first token and turn round trip (real CLI, fake Messages API)"
IMAGE = os.environ.get("BERTH_BENCH_SDK_IMAGE", "berth-session-sdk:latest")
#: Seconds a CLI sits idle before "a prompt after a pause" and "a slot claimed after
#: a wait": long enough for the CLI's JavaScript engine to drop unused compiled code.
LONG_IDLE = 60


def _ms(values: list[Any]) -> list[float]:
    return [1000 * v for v in values if isinstance(v, int | float)]


def _median(values: list[float]) -> float:
    return summarize(values).get("median", float("nan"))


def run(ctx: Context) -> dict[str, Any]:
    repeats, turns = (2, 10) if ctx.quick else (4, 30)
    # The full run also waits this long once before a prompt and once before a claim.
    long_idle = 0 if ctx.quick else LONG_IDLE
    result: dict[str, Any] = {"id": "claude", "title": TITLE}
    client = docker_client()
    client.images.get(IMAGE)
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise RuntimeError("nsenter is missing (apt-get install util-linux)")
    holder = client.containers.run(
        IMAGE, ["sleep", "infinity"], detach=True, network_mode="none", labels={"berth.bench": "netns"}
    )
    work = ctx.workdir / "claude"
    work.mkdir(parents=True, exist_ok=True)
    try:
        holder.reload()
        pid = holder.attrs["State"]["Pid"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env["PYTHONPATH"] = str(REPO)
        argv = [nsenter, f"--net=/proc/{pid}/ns/net", sys.executable, "-m", "scripts.bench.claude_run"]
        ctx.log(f"claude: {repeats} cold and warm-pool sessions, {turns} warm turns, floor on the host")
        done = subprocess.run(
            [*argv, holder.id, str(work), str(repeats), str(turns), str(long_idle)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
    finally:
        holder.remove(force=True)
    (ctx.workdir / "claude.log").write_text(done.stderr)
    for log in work.glob("*.log"):  # the servers' and the fake API's, kept with the results
        shutil.copy(log, ctx.workdir / f"claude-{log.name}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"claude_run exited {done.returncode}: {done.stderr[-600:]}")
    data = json.loads(lines[-1][len("RESULT ") :])
    floor, berth = data["floor"], data["berth"]
    floor_first, floor_trip = _ms(floor["warm_first_token_s"]), _ms(floor["warm_round_trip_s"])
    cold = berth["cold"]
    # A create that found no claimable slot was started cold: not a warm-pool sample.
    pooled = [r for r in berth["warm_pool"] if r.get("from_pool", True)]
    unpooled = len(berth["warm_pool"]) - len(pooled)
    warm_first, warm_trip = _ms(berth["warm_first_token_s"]), _ms(berth["warm_round_trip_s"])
    pool_first = _ms([r["first_token_s"] for r in pooled])
    pool_busy = _ms([r["first_token_s"] for r in pooled if not r.get("after_refill")])
    pool_quiet = _ms([r["first_token_s"] for r in pooled if r.get("after_refill")])
    after_idle = _ms(berth.get("after_idle_first_token_s", []))
    resume_first = _ms([r["first_token_s"] for r in berth.get("resume", [])])
    floor_cold = _ms(floor["cold_first_token_s"])
    floor_started = _ms(floor["started_first_token_s"])
    nan = float("nan")
    result["rows"] = [
        row("cold session: create → first token", "ms", _ms([r["first_token_s"] for r in cold]),
            "host CLI: start + first token", floor_cold),
        row("  part: create → container created", "ms", _ms([r.get("to_created_s") for r in cold])),
        row("  part: container created → started", "ms", _ms([r["container_started_s"] for r in cold])),
        row("  part: container started → agent connected", "ms",
            _ms([r.get("to_agent_connected_s") for r in cold])),
        row("  part: CLI start (spawn + handshake, agent log)", "ms", _ms([r["cli_start_s"] for r in cold]),
            "host CLI: spawn + handshake", _ms(floor["cold_connect_s"])),
        row("warm-pool session: first prompt → first token", "ms", pool_first,
            "host CLI warm turn: prompt → first token", floor_first),
        row("  the same against the first prompt of a started host CLI", "ms", pool_first,
            "host CLI started, idle 1 s: first prompt → first token", floor_started),
        row("  unwarmed: a started host CLI's first prompt against its warm turn", "ms", floor_started,
            "host CLI warm turn: prompt → first token", floor_first),
        row("  sent at once (the pool's replacement starting meanwhile)", "ms", pool_busy),
        row("  sent once the pool's replacement is up", "ms", pool_quiet),
        row("  its second prompt → first token", "ms", _ms([r.get("second_first_token_s") for r in pooled]),
            "host CLI warm turn: prompt → first token", floor_first),
        row(f"  claimed after {LONG_IDLE} s in the pool: first prompt → first token", "ms",
            _ms(berth.get("pool_after_idle_first_token_s", [])),
            "host CLI warm turn: prompt → first token", floor_first),
        row("warm-pool session: create → idle", "ms", _ms([r["create_to_idle_s"] for r in pooled])),
        row("  created with no claimable slot (started cold, left out)", "sessions", [unpooled]),
        row("warm turn: prompt → first token", "ms", warm_first,
            "host CLI warm turn: prompt → first token", floor_first),
        row("warm turn: prompt → result", "ms", warm_trip, "host CLI warm turn: prompt → result", floor_trip),
        row(f"a prompt after {LONG_IDLE} s idle → first token", "ms", after_idle,
            f"host CLI: a prompt after {LONG_IDLE} s idle", _ms(floor.get("after_idle_first_token_s", []))),
        row("parked session: prompt → first token (CLI resumes)", "ms", resume_first,
            "host CLI: start + first token", floor_cold),
        row("  part: CLI resume (agent log)", "ms", _ms([berth.get("resume_cli_s")])),
        row("idle session container memory, CLI running", "MiB", [berth.get("idle_mib_running", nan)]),
        row("idle session container memory, CLI parked", "MiB", [berth.get("idle_mib_parked", nan)]),
    ]  # fmt: skip
    pool_ratio = _median(pool_first) / _median(floor_first)
    trip_ratio = _median(warm_trip) / _median(floor_trip)
    first_ratio = _median(warm_first) / _median(floor_first)
    # What a pool that did not warm its CLI would get: a started CLI's first
    # prompt costs this much more than its later ones (work the CLI does on its
    # first turns; a pooled CLI is warmed with turns the agent's stand-in
    # answers, docs/claude-code.md).
    bound_ratio = _median(floor_started) / _median(floor_first)
    started_ratio = _median(pool_first) / _median(floor_started)
    result["verdicts"] = [
        {"target": "warm-pool first token ≤ 1.25 × warm-turn floor", "value":
         f"{pool_ratio:.2f} × (an unwarmed CLI's first prompt: {bound_ratio:.2f} ×; "
         f"{started_ratio:.2f} × a started host CLI's first prompt)", "ok": pool_ratio <= 1.25},
        {"target": "warm turn round trip ≤ 1.1 × floor", "value": f"{trip_ratio:.2f} ×",
         "ok": trip_ratio <= 1.1},
        {"target": "warm turn first token ≤ 1.1 × floor", "value": f"{first_ratio:.2f} ×",
         "ok": first_ratio <= 1.1},
    ]  # fmt: skip
    result["samples"] = data
    result["extra"] = {"repeats": repeats, "turns": turns, "image": IMAGE}
    return result
