"""The results table: markdown (bench-results/, BENCHMARKS.md) from the JSON results."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from scripts.bench import profile

BEGIN = "<!-- bench:results:begin (written by scripts/bench.sh; edit outside these markers) -->"
END = "<!-- bench:results:end -->"
STATS = ("median", "p90", "p99", "min", "max")
NUMBER = {
    "cold": 1,
    "warm": 2,
    "turn": 3,
    "relay": 4,
    "idle": 5,
    "concurrent": 6,
    "sessions": 7,
    "claude": 8,
    "neighbour": 9,
}


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    size = abs(v)
    if unit == "tokens/s" or size >= 1000:
        text = f"{v:,.0f}"
    elif size >= 100:
        text = f"{v:.0f}"
    elif size >= 10:
        text = f"{v:.1f}"
    elif size >= 1:
        text = f"{v:.2f}"
    else:
        text = f"{v:.3f}"
    return f"{text} {unit}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "—"
    return f"{a / b:.2f}×"


def _detail_table(result: dict[str, Any]) -> list[str]:
    lines = ["| series | n | median | p90 | p99 | min | max |", "|---|---|---|---|---|---|---|"]
    for r in result.get("rows", []):
        s, unit = r["stats"], r["unit"]
        if not s.get("n"):
            lines.append(f"| {r['label']} | 0 | — | — | — | — | — |")
            continue
        lines.append(f"| **{r['label']}** | {s['n']} | " + " | ".join(fmt(s[k], unit) for k in STATS) + " |")
        f = r.get("floor_stats")
        if f and f.get("n"):
            lines.append(
                f"| floor: {r['floor_label']} | {f['n']} | "
                + " | ".join(fmt(f[k], unit) for k in STATS)
                + " |"
            )
            lines.append("| ratio Berth ÷ floor | | " + " | ".join(ratio(s[k], f[k]) for k in STATS) + " |")
    return lines


def _summary_row(result: dict[str, Any]) -> str:
    num = NUMBER.get(result["id"], "?")
    title = result.get("title", result["id"]).split(" (")[0]
    previous = result.get("previous", "—")
    if result.get("status") in ("not measured", "failed"):
        why = result.get("reason", "?").replace("|", "/")
        return f"| {num} | {title} | **{result['status']}**: {why} | | | | ✗ | {previous} |"
    rows = result.get("rows", [])
    main = rows[0] if rows else None
    if result["id"] == "idle":
        main = next((r for r in rows if r["label"].startswith("RSS per idle session")), main)
    verdicts = result.get("verdicts", [])
    targets = "<br>".join(v["target"] for v in verdicts) or "—"
    marks = "<br>".join(("✓ " if v["ok"] else "✗ ") + v["value"] for v in verdicts) or "—"
    if main is None:
        return f"| {num} | {title} | — | — | — | {targets} | {marks} | {previous} |"
    s, f, unit = main["stats"], main.get("floor_stats") or {}, main["unit"]
    value = fmt(s.get("median"), unit)
    if result["id"] == "turn":
        value += f" (p99 {fmt(s.get('p99'), unit)})"
    if result["id"] == "relay" and len(rows) > 1 and rows[1]["stats"].get("n"):
        value += f"; one token per frame: {fmt(rows[1]['stats']['median'], unit)}"
    if result["id"] == "idle":
        by_label = {r["label"]: r["stats"].get("median") for r in rows}
        rss = [v for k, v in by_label.items() if k.startswith("server RSS at")]
        if len(rss) >= 2:
            value += f" per session (RSS {fmt(rss[0], 'MB')} empty, {fmt(rss[-1], 'MB')} at 1,000)"
    floor = fmt(f.get("median"), unit) if f else "—"
    return (
        f"| {num} | {title} | {value} | {floor} | {ratio(s.get('median'), f.get('median'))} | "
        f"{targets} | {marks} | {previous} |"
    )


def _extras(result: dict[str, Any]) -> list[str]:
    extra = result.get("extra") or {}
    lines: list[str] = []
    rid = result["id"]
    if rid == "cold" and "berth_breakdown" in extra:
        b, f = extra["berth_breakdown"], extra["floor_breakdown"]
        lines.append(
            "Phases (medians, from Docker's Created/StartedAt timestamps): "
            f"before the container exists: Berth {b['before_container_created_ms']:.0f} ms, floor "
            f"{f['before_container_created_ms']:.0f} ms; Docker created → started: Berth "
            f"{b['docker_created_to_started_ms']:.0f} ms, floor {f['docker_created_to_started_ms']:.0f} ms; "
            f"started → ready: Berth {b['started_to_ready_ms']:.0f} ms (agent start, WebSocket, "
            f"`ready`, relay to the client), floor {f['started_to_ready_ms']:.0f} ms (imports, TCP connect)."
        )
        if "started_to_agent_connected_ms" in b:
            lines.append(
                "Berth's started → ready, split at the agent's own \"connected to\" log line (Docker's log "
                "timestamp): container start → agent WebSocket connected "
                f"{b['started_to_agent_connected_ms']:.0f} ms (supervisor + worker interpreter start-ups "
                "and imports, handshake); agent connected → client sees `idle` "
                f"{b['agent_connected_to_ready_ms']:.0f} ms (`ready` frame, SessionActor, relay "
                "to the client)."
            )
    if rid == "cold" and extra.get("agent_app_import_ms"):
        lines.append(
            f"`import agent.app` inside the image takes {extra['agent_app_import_ms']:.0f} ms (median of 3 "
            "containers). The floor pays it once; Berth's container runs `python3 -m agent` as PID 1, a "
            "supervisor whose `agent/__main__.py` imports `agent.app` and then spawns a worker "
            "`python3 -m agent --worker` that imports it again."
        )
    if rid == "warm" and "create_while_pool_not_ready" in extra:
        probe = extra["create_while_pool_not_ready"]
        lines.append(
            f"A create while the pool is not ready falls back to a cold start: {probe.get('status')} in "
            f"{1000 * probe.get('total_s', float('nan')):.0f} ms. Pooled containers started during the wait: "
            f"{extra.get('pooled_containers_started')} (seen exiting: {extra.get('pool_exits_seen')})."
        )
    if rid == "turn":
        lines.append(
            f"CPU per turn: server {extra.get('server_cpu_ms_per_turn', float('nan')):.2f} ms, agent "
            f"{extra.get('agent_cpu_ms_per_turn', float('nan')):.2f} ms "
            f"({extra.get('turns')} measured turns after {extra.get('warmup')} warm-up turns)."
        )
    if rid == "relay":
        lines.append(
            f"Server CPU per token: {extra.get('server_cpu_us_per_token', float('nan')):.2f} µs; "
            f"agent CPU per token: {extra.get('agent_cpu_us_per_token', float('nan')):.2f} µs; "
            f"{extra.get('tokens_per_frame', float('nan')):,.0f} tokens per `stream` frame on average "
            f"(median {extra.get('frames_per_stream_median')} frames per 10,000-token stream); "
            "one token per frame: server CPU "
            f"{extra.get('server_cpu_us_per_token_single', float('nan')):.1f} µs per frame; "
            f"runs with a lost, duplicated or reordered token: "
            f"{extra.get('runs_with_lost_or_reordered_tokens')} of {extra.get('repeats')}."
        )
    if rid == "idle" and extra.get("runs"):
        first = extra["runs"][0]
        top = max(int(k) for k in first["levels"])
        lvl = first["levels"].get(top) or first["levels"].get(str(top))
        if lvl:
            lines.append(
                f"At {top} sessions: {lvl['fds']:.0f} open fds; {top} sessions created over REST in "
                f"{lvl['create_s']:.1f} s and their agents connected in {lvl['connect_s']:.1f} s "
                "(first repeat)."
            )
        hold = first.get("after_hold")
        if hold:
            lines.append(
                f"After holding them idle past the server's ping interval: {hold['rss_mb']:.1f} MB RSS, "
                f"statuses {hold['statuses']}, connections closed by the server: "
                f"{first.get('closed_by_server')}."
            )
    if rid == "concurrent":
        lines.append(
            f"Statuses over all bursts: {extra.get('status_totals')}"
            + (f"; reasons: {extra['reasons']}" if extra.get("reasons") else "")
            + ". Berth starts containers on 8 worker threads (`container_workers`); "
            "the floor starts all 20 at once."
        )
    steal = result.get("steal")
    if steal:
        lines.append(
            f"Machine during this benchmark: {steal['busy_pct']:.0f}% busy, {steal['steal_pct']:.1f}% steal."
        )
    return lines


def _missed_notes(result: dict[str, Any]) -> list[str]:
    """What bounds a missed target, from the measurements themselves."""
    notes: list[str] = []
    rid, rows = result["id"], {r["label"]: r for r in result.get("rows", [])}
    missed = [v for v in result.get("verdicts", []) if not v["ok"]]
    if result.get("status") == "not measured" or not missed:
        return notes
    if rid == "turn":
        plain = result["rows"][0]["stats"]
        quick = next((r for label, r in rows.items() if "TCP_QUICKACK" in label), None)
        first = next((r for label, r in rows.items() if "first frame" in label), None)
        if quick and quick["stats"].get("median", 1e9) * 5 < plain["median"]:
            notes.append(
                f"The round trip ({plain['median']:.1f} ms) is a delayed-ACK stall: the server never "
                "sets TCP_NODELAY, so of the several small frames a turn writes to the client "
                "(`message`, `ack`, `session_update`, `result`) the second waits in the kernel until "
                "the client acknowledges the first — after Linux's 40 ms delayed-ACK timer. The same "
                f"turns with the client acknowledging at once take {quick['stats']['median']:.2f} ms "
                f"(p99 {quick['stats']['p99']:.2f} ms): that is Berth's own path."
            )
        extra = result.get("extra") or {}
        server_ms, agent_ms = extra.get("server_cpu_ms_per_turn"), extra.get("agent_cpu_ms_per_turn")
        if server_ms is not None and agent_ms is not None:
            notes.append(
                f"A turn costs {server_ms:.2f} ms of server CPU and {agent_ms:.2f} ms of agent CPU "
                f"(/proc, over all measured turns) against a {plain['median']:.2f} ms median round trip: "
                "the round trip is mostly Python work on the relay path (frames in: the client's "
                "command, the agent's `result`; frames out: `message`, `ack`, `session_update`, "
                "`result` to the client and `user_message` to the agent; wsproto parsing and framing "
                "each time), not waiting; see the profile for the split."
            )
        if first:
            notes.append(
                "The first frame back (the user's `message` event) arrives after "
                f"{first['stats']['median']:.2f} ms: the client's command reaches the SessionActor, "
                "which forwards it to the agent and publishes the event."
            )
    if rid == "cold":
        extra = result.get("extra") or {}
        b, f = extra.get("berth_breakdown") or {}, extra.get("floor_breakdown") or {}
        if b and f:
            docker_gap = b["docker_created_to_started_ms"] - f["docker_created_to_started_ms"]
            before_gap = b["before_container_created_ms"] - f["before_container_created_ms"]
            ready_gap = b["started_to_ready_ms"] - f["started_to_ready_ms"]
            notes.append(
                "Docker is fast on this machine (the floor is a few hundred ms, not the 3–4 s of the "
                "architecture notes), so 5% is only a few ms. Where Berth's extra time goes (medians): "
                f"{before_gap:+.0f} ms before the container exists (REST, actors, token, secrets dir), "
                f"{docker_gap:+.0f} ms in Docker's create → start, {ready_gap:+.0f} ms from container start "
                "to ready (the agent's second interpreter start-up and imports, WebSocket handshake, "
                "`ready`, actor hops, relay to the client)."
            )
    if rid == "relay":
        notes.append(
            "See the client ceiling rows: when Berth's rate approaches them the client bounds the figure."
        )
    if rid == "idle":
        notes.append(
            "Each idle session costs 4 threads (request, ws reader, outbox writer, actor) plus their stacks."
        )
    return notes


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"### Run of {meta['date']} ({meta['mode']})",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine']}",
        f"- Software: {meta['software']}",
        f"- Source: {meta['git']}",
        f"- Raw data: `{meta['json']}` (every sample), profiles and server logs in `{meta['dir']}`",
        "",
        "Each figure is compared with its floor measured in the same run (interleaved with Berth's runs); "
        "ratio = Berth ÷ floor. For throughput a ratio below 1 means slower than the floor.",
        "",
        "| # | Benchmark | Berth (median) | Floor (median, same run) | Ratio | Target | Verdict "
        "| Previous system |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(results, key=lambda r: NUMBER.get(r["id"], 99))
    lines += [_summary_row(r) for r in ordered]
    lines.append("")
    for result in ordered:
        lines += [f"#### {NUMBER.get(result['id'], '?')}. {result.get('title', result['id'])}", ""]
        if result.get("status") in ("not measured", "failed"):
            lines += [f"**{result['status'].capitalize()}**: {result.get('reason', '?')}", ""]
        if result.get("rows"):
            lines += [*_detail_table(result), ""]
        for text in _extras(result):
            lines += [text, ""]
        for note in _missed_notes(result):
            lines += [f"*Missed target:* {note}", ""]
    profiled = [r for r in ordered if r.get("profile")]
    if profiled:
        lines += [
            "#### Server profiles (py-spy on the server process, in a separate unmeasured pass)",
            "",
            "Shares are of samples in which a server thread held the GIL (`py-spy record --gil`): the server "
            "is one GIL-bound process, so this is where its time goes.",
            "",
        ]
        base = Path(meta.get("repo", "/"))
        titles = {
            "profile": {
                "turn": "3. turn round trip (back-to-back `/quiet` turns)",
                "relay": "4. token relay, real agent (back-to-back `/stream 10000`)",
            },
            "profile_single": {"relay": "4. token relay, one token per frame (fake agent)"},
        }
        for result in profiled:
            for key in ("profile", "profile_single"):
                if result.get(key):
                    title = titles[key].get(result["id"], result["id"])
                    lines += profile.markdown(result[key], title, base)
    lines += ["#### Commands this run started", "", "```"]
    lines += [_pretty(c) for c in meta.get("commands", [])]
    lines += ["```", ""]
    return "\n".join(lines)


def _pretty(command: str) -> str:
    """Commands as one would type them (interpreter and console-script paths shortened)."""
    exe = sys.executable
    berth = str(Path(exe).parent / "berth")
    return command.replace(f"{exe} {berth} ", "berth ").replace(f"{exe} ", "python3 ")


def update_benchmarks_md(path: Path, generated: str) -> None:
    """Replace the generated region of BENCHMARKS.md (or append one)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    block = f"{BEGIN}\n{generated}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _old, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
