"""Run Berth's benchmarks and write the table.

    python3 -m scripts.bench                 # everything (what scripts/bench.sh runs)
    python3 -m scripts.bench --quick         # fewer repeats
    python3 -m scripts.bench --only turn,relay --no-profile

Results go to ``bench-results/<stamp>/`` (``results.json`` with every sample,
``results.md``, py-spy profiles, server logs) and ``bench-results/latest.*``;
a full run (every benchmark, not ``--quick``) also replaces the generated
region of ``BENCHMARKS.md`` (``--write-md`` forces that, ``--no-write-md``
prevents it). Every container and process a benchmark started is removed at
the end, also after a failure or Ctrl-C (containers by their
``berth.instance`` label, processes by pid).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from scripts.bench import report
from scripts.bench.common import REPO, Context, kill_all_children, raise_fd_limit

ORDER = ["cold", "warm", "turn", "relay", "idle", "concurrent", "sessions", "claude", "neighbour"]
DOCKER = {"cold", "warm", "concurrent", "claude"}
#: A benchmark that runs longer than this is stopped (all its waits are bounded anyway).
WATCHDOG_S = {
    "cold": 900,
    "warm": 900,
    "turn": 600,
    "relay": 600,
    "idle": 1200,
    "concurrent": 1200,
    "sessions": 600,
    "claude": 1800,
    "neighbour": 600,
}


class WatchdogExpired(Exception):
    pass


def _selection(args: argparse.Namespace) -> list[str]:
    chosen = ORDER if not args.only else [b.strip() for b in args.only.split(",") if b.strip()]
    skip = {b.strip() for b in (args.skip or "").split(",") if b.strip()}
    unknown = (set(chosen) | skip) - set(ORDER)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(ORDER)}"
        )
    return [b for b in ORDER if b in chosen and b not in skip]


def _run_text(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _meta(args: argparse.Namespace, selected: list[str], out: Path) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    docker_version = _run_text(["docker", "version", "--format", "{{.Server.Version}}"]) or "n/a"
    versions = []
    for dist in ("pykka", "simple-websocket", "wsproto", "werkzeug", "websocket-client", "msgspec", "docker"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    commit = _run_text(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = len([line for line in _run_text(["git", "status", "--porcelain"]).splitlines() if line.strip()])
    command = os.environ.get("BERTH_BENCH_COMMAND") or " ".join(
        ["python3 -m scripts.bench", *map(shlex.quote, sys.argv[1:])]
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": ("quick" if args.quick else "full") + f", benchmarks: {', '.join(selected)}",
        "command": command,
        "machine": (
            f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Linux {platform.release()}, "
            f"Docker engine {docker_version}"
        ),
        "software": f"Python {platform.python_version()}; " + ", ".join(versions),
        "git": f"commit {commit}" + (f" with {dirty} uncommitted/untracked paths" if dirty else ""),
        "dir": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
        "json": str((out / "results.json").relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
        "repo": str(REPO),
    }


def _cleanup(ctx: Context, docker_used: bool) -> None:
    kill_all_children()
    if not docker_used:
        return
    try:
        from scripts.bench.common import docker_client, remove_instance_containers

        client = docker_client()
        for instance in ctx.instances:
            removed = remove_instance_containers(client, instance)
            if removed:
                ctx.log(f"cleanup: removed {removed} leftover container(s) of instance {instance}")
    except Exception as exc:
        ctx.log(f"cleanup: docker sweep failed: {exc}")


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise WatchdogExpired("the benchmark ran past its watchdog limit")


def _on_term(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a few minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(ORDER)}")
    parser.add_argument("--skip", help="comma-separated benchmarks to leave out")
    parser.add_argument("--no-profile", action="store_true", help="do not run py-spy")
    parser.add_argument("--out-dir", default=str(REPO / "bench-results"))
    parser.add_argument("--write-md", action="store_true", help="update BENCHMARKS.md even for a partial run")
    parser.add_argument("--no-write-md", action="store_true", help="never update BENCHMARKS.md")
    parser.add_argument("--needs-docker", action="store_true", help="print yes/no for the selection and exit")
    args = parser.parse_args()
    selected = _selection(args)
    if args.needs_docker:
        print("yes" if DOCKER & set(selected) else "no")
        return 0
    if not selected:
        raise SystemExit("nothing selected")
    raise_fd_limit(1 << 20)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out = Path(args.out_dir).resolve() / stamp
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    prefix = "bench" + os.urandom(3).hex()
    profile_on = not args.no_profile
    if profile_on and shutil.which("py-spy") is None:
        print("py-spy not found: profiles are skipped (pip install py-spy)", file=sys.stderr)
        profile_on = False
    ctx = Context(workdir, out, prefix, args.quick, profile_on)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    meta = _meta(args, selected, out)
    ctx.log(
        f"benchmarks {selected} ({'quick' if args.quick else 'full'}); "
        f"instance prefix {prefix}; results {out}"
    )
    results: list[dict[str, Any]] = []
    interrupted = False
    try:
        for name in selected:
            ctx.log(f"=== {name}")
            started = time.monotonic()
            module = importlib.import_module(f"scripts.bench.b_{name}")
            signal.alarm(WATCHDOG_S[name] // (2 if args.quick else 1))
            try:
                result = module.run(ctx)
                result.setdefault("status", "ok")
            except (Exception, WatchdogExpired) as exc:
                traceback.print_exc()
                result = {
                    "id": name,
                    "title": getattr(module, "TITLE", name),
                    "status": "failed",
                    "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:400],
                }
                _cleanup(ctx, name in DOCKER)
            finally:
                signal.alarm(0)
            result["seconds"] = time.monotonic() - started
            results.append(result)
            for verdict in result.get("verdicts", []):
                ctx.log(
                    f"{name}: {'PASS' if verdict['ok'] else 'MISS'} {verdict['target']}: {verdict['value']}"
                )
            if result["status"] != "ok":
                ctx.log(f"{name}: {result['status']}: {result.get('reason')}")
    except KeyboardInterrupt:
        interrupted = True
        ctx.log("interrupted: cleaning up")
    finally:
        signal.alarm(0)
        _cleanup(ctx, bool(DOCKER & set(selected)))
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    meta["commands"] = ctx.commands
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    text = report.markdown(results, meta)
    (out / "results.md").write_text(text)
    top = Path(args.out_dir).resolve()
    shutil.copy(out / "results.md", top / "latest.md")
    shutil.copy(out / "results.json", top / "latest.json")
    full = selected == ORDER and not args.quick and not interrupted
    if not args.no_write_md and (full or args.write_md):
        report.update_benchmarks_md(REPO / "BENCHMARKS.md", text)
        ctx.log("BENCHMARKS.md updated")
    print()
    print(text)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
