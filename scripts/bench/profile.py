"""py-spy on the server process during a benchmark's extra, unmeasured pass.

Two samplers run side by side in non-blocking mode (they read the target's
memory without pausing it): one writes a flamegraph SVG, the other raw
collapsed stacks that are summarised here: on-CPU samples per server thread
role, top functions by self time and by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LINENO = re.compile(r":\d+\)$")


def role(thread: str, stack: str) -> str:
    """What a server thread is for, from its name (and its stack for request threads)."""
    if "simple_websocket.Base._thread" in thread:
        return "simple-websocket reader threads (recv + wsproto parse)"
    if "process_request_thread" in thread:
        if "agent_endpoint.py" in stack:
            return "agent connection thread (werkzeug request thread: read, parse, decode agent frames)"
        if "client_endpoint.py" in stack or "ClientSession" in stack:
            return "client connection thread (werkzeug request thread: read client commands)"
        if "rest.py" in stack:
            return "REST requests"
        if "run_wsgi" not in stack:
            return "request threads, stack cut short by py-spy (inside wsproto's frame parser)"
        return "request threads (handshakes, other)"
    if thread.startswith("berth-writer"):
        return "socket writer threads"
    if "IOLoop._run" in stack or thread.startswith("berth-ioloop"):
        return "the I/O loop (every WebSocket: read, wsproto parse, decode, tell)"
    if thread.startswith("berth-client"):
        return "client workers (subscriptions)"
    if thread.startswith("SessionActor"):
        return "SessionActor threads"
    if "Actor" in thread:
        return "other actor threads"
    return "other threads"


def available() -> bool:
    return shutil.which("py-spy") is not None


@dataclass
class Recording:
    pid: int
    svg: Path
    raw: Path
    procs: list[subprocess.Popen[bytes]]
    commands: list[list[str]]
    log: Path
    duration: int
    rate: int

    def wait(self, timeout: float) -> dict[str, Any]:
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        commands = [" ".join(c) for c in self.commands]
        if not self.raw.exists():
            return {"error": f"py-spy wrote no output; see {self.log}", "commands": commands}
        summary = summarize_raw(self.raw)
        summary["gil_busy_pct"] = 100.0 * summary["samples"] / (self.duration * self.rate)
        summary["svg"] = str(self.svg)
        summary["raw"] = str(self.raw)
        summary["commands"] = commands
        return summary


def record(pid: int, out_prefix: Path, duration: float, rate: int = 500) -> Recording:
    """Start sampling ``pid`` for ``duration`` seconds (returns at once).

    Two non-blocking samplers: a flamegraph of on-CPU stacks (SVG), and raw
    stacks of the thread holding the GIL (``--gil``) for the summary: the
    server is GIL-bound, so "who holds the GIL doing what" is where its time
    goes, and GIL samples / (rate x duration) is how busy it is.
    """
    seconds = max(1, round(duration))
    svg = out_prefix.with_suffix(".svg")
    raw = out_prefix.with_suffix(".gil.collapsed.txt")
    log = out_prefix.with_suffix(".py-spy.log")
    base = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    base.append("--nonblocking")
    svg_cmd = [*base, "--format", "flamegraph", "--output", str(svg)]
    raw_cmd = [*base, "--gil", "--threads", "--format", "raw", "--output", str(raw)]
    with open(log, "ab") as handle:
        procs = [
            subprocess.Popen(cmd, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL)
            for cmd in (svg_cmd, raw_cmd)
        ]
    return Recording(pid, svg, raw, procs, [svg_cmd, raw_cmd], log, seconds, rate)


def _function(frame: str) -> str:
    return _LINENO.sub(")", frame.strip())


def summarize_raw(path: Path, top: int = 15) -> dict[str, Any]:
    roles: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        entries = stack.split(";")
        thread = ""
        if entries and entries[0].startswith("thread ("):
            thread = entries[0].split(": ", 1)[-1]
            entries = entries[1:]
        frames = [_function(f) for f in entries if f and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        roles[role(thread, ";".join(frames))] += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def pct(counter: Counter[str]) -> list[tuple[str, int, float]]:
        return [(name, n, 100.0 * n / total if total else 0.0) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "roles": pct(roles),
        "self": pct(self_time),
        "inclusive": [
            (name, n, 100.0 * n / total if total else 0.0) for name, n in inclusive.most_common(60)
        ],
    }


_GENERIC = (
    "Thread.",
    "_bootstrap",
    "BaseServer.",
    "BaseRequestHandler.",
    "BaseHTTPRequestHandler.",
    "WSGIRequestHandler.",
    "ThreadingMixIn.",
    "Actor._actor_loop",
    "BerthServer._wsgi",
)


def markdown(summary: dict[str, Any], title: str, base: Path | None = None) -> list[str]:
    """Lines of markdown for one profile summary."""
    if "error" in summary:
        return [f"**{title}**: profile not taken: {summary['error']}", ""]
    svg = Path(summary["svg"])
    if base is not None and svg.is_relative_to(base):
        svg = svg.relative_to(base)
    lines = [
        f"**{title}**: {summary['samples']} GIL-holding samples; the GIL was held "
        f"{summary['gil_busy_pct']:.0f}% of the time. Flamegraph (on-CPU stacks): `{svg}`.",
        "",
        "| server thread (holding the GIL) | share |",
        "|---|---|",
    ]
    lines += [f"| {name} | {share:.1f}% |" for name, _n, share in summary["roles"]]
    lines += ["", "| top functions, self time | share |", "|---|---|"]
    lines += [f"| `{name}` | {share:.1f}% |" for name, _n, share in summary["self"][:12]]
    lines += ["", "| top functions, inclusive time | share |", "|---|---|"]
    shown = [r for r in summary["inclusive"] if not r[0].startswith(_GENERIC)]
    lines += [f"| `{name}` | {share:.1f}% |" for name, _n, share in shown[:12]]
    lines.append("")
    return lines
