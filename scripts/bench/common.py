"""Shared pieces of the benchmarks: statistics, /proc readings, server processes.

Every server a benchmark talks to runs in its own process (``berth serve``,
the ExternalRuntime bootstrap in ``server_boot.py``, or a bare floor server
in ``floors.py``) so that the benchmark client never shares a GIL with what
it measures. Everything binds and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: A dummy OAuth token for the servers: without one every session first waits
#: ``token_retry_delay`` (5 s) for a token that never comes (by design).
DUMMY_OAUTH = "bench-dummy-oauth-token"


# ----------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize(values: Iterable[float]) -> dict[str, float]:
    data = sorted(float(v) for v in values)
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "median": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "min": data[0],
        "max": data[-1],
        "mean": sum(data) / len(data),
    }


# ----------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process: Python work against kernel work."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB), VmHWM (kB) and Threads of a process."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class StealMeter:
    """CPU steal (and busy) share of the whole machine between start() and stop()."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]

    def stop(self) -> dict[str, float]:
        end = self._read()
        delta = [b - a for a, b in zip(self._start, end, strict=False)]
        total = sum(delta[:8]) or 1
        idle = delta[3] + delta[4]
        steal = delta[7] if len(delta) > 7 else 0
        return {"steal_pct": 100.0 * steal / total, "busy_pct": 100.0 * (total - idle) / total}


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def established_sockets(pid: int, remote_port: int) -> int:
    """How many of ``pid``'s TCP sockets are established to ``remote_port`` (IPv4)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return 0
    count = 0
    for line in lines:
        parts = line.split()
        rem_port = int(parts[2].rsplit(":", 1)[1], 16)
        if rem_port == remote_port and parts[3] == "01" and parts[9] in inodes:
            count += 1
    return count


# ----------------------------------------------------------------- processes


def python() -> str:
    """The interpreter itself (not a pyenv shim: a shim adds ~100 ms per start)."""
    return sys.executable


def berth_command() -> list[str]:
    """``berth`` (the console script next to this interpreter), else ``python -m transport.cli``."""
    script = Path(sys.executable).parent / "berth"
    if script.exists():
        return [python(), str(script)]
    return [python(), "-m", "transport.cli"]


class Process:
    """A child process with its stdout read line by line on a thread.

    It runs in its own session so that a cleanup can signal its whole group;
    stdin is a pipe (a bootstrap server exits when it reaches EOF).
    """

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path = REPO):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {' '.join(argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"stdout-{self.pid}", daemon=True)
        self._reader.start()
        _LIVE.add(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._log.write(f"[stdout] {line}\n".encode())
            self._log.flush()
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """The next stdout line starting with ``prefix`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.argv[:4]}: no line starting {prefix!r} within {timeout:g} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(
                    f"{' '.join(self.argv[:6])} exited (code {self.proc.wait()}) before printing {prefix!r}; "
                    f"see {self.log_path}"
                )
            if line.startswith(prefix):
                return line

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask it to stop (close stdin, then ``sig``), kill the group if it lingers."""
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_group()
        _LIVE.discard(self)
        self._reader.join(timeout=2)
        try:
            self._log.close()
        except OSError:
            pass
        return self.proc.returncode

    def _kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        self._kill_group()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


_LIVE: set[Process] = set()


def kill_all_children() -> None:
    """Last-resort cleanup of every process a benchmark started (by pid/group)."""
    for process in list(_LIVE):
        process.kill()
        _LIVE.discard(process)


@dataclass
class Server:
    """A Berth server process and what a client needs to reach it."""

    process: Process
    port: int
    api_token: str
    state_dir: Path
    instance: str
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {self.api_token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def create_session(self, name: str = "bench") -> str:
        status, body = self.request("POST", "/api/sessions", {"name": name})
        if status != 201:
            raise RuntimeError(f"POST /api/sessions answered {status}: {body}")
        return str(body["session"]["id"])

    def delete_session(self, sid: str) -> None:
        status, body = self.request("DELETE", f"/api/sessions/{sid}")
        if status not in (204, 404):
            raise RuntimeError(f"DELETE /api/sessions/{sid} answered {status}: {body}")

    def statuses(self) -> dict[str, int]:
        status, body = self.request("GET", "/api/sessions")
        if status != 200:
            raise RuntimeError(f"GET /api/sessions answered {status}: {body}")
        counts: dict[str, int] = {}
        for info in body["sessions"]:
            counts[info["status"]] = counts.get(info["status"], 0) + 1
        return counts

    def tokens(self, path: Path, timeout: float = 60.0) -> dict[str, str]:
        """Session tokens from a bootstrap server (``server_boot.py``) only."""
        self.process.tell(f"tokens {path}")
        self.process.expect("tokens ", timeout)
        tokens: dict[str, str] = json.loads(path.read_text())
        return tokens

    def stop(self, timeout: float = 90.0) -> int | None:
        return self.process.stop(timeout=timeout)


def _serving_port(line: str) -> int:
    # "Berth is serving on http://127.0.0.1:PORT (agents: ...)"
    url = line.split()[4]
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _prepare_state(workdir: Path, name: str) -> tuple[Path, Path, str]:
    state_dir = workdir / f"state-{name}"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)  # 256 bits: the server refuses a weaker API token
    token_file = workdir / f"api-token-{name}"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return state_dir, token_file, token


def start_berth_serve(
    workdir: Path,
    instance: str,
    warm: int = 0,
    max_sessions: int = 50,
    runtime: str = "docker",
    timeout: float = 120.0,
) -> Server:
    """``berth serve --port 0`` in a subprocess with its own state dir and API token file."""
    state_dir, token_file, token = _prepare_state(workdir, instance)
    argv = [
        *berth_command(),
        "--instance",
        instance,
        "--state-dir",
        str(state_dir),
        "--max-sessions",
        str(max_sessions),
        "serve",
        "--port",
        "0",
        "--api-token-file",
        str(token_file),
        "--runtime",
        runtime,
        "--warm",
        str(warm),
    ]
    return _launch_server(argv, workdir, instance, state_dir, token, timeout)


def _launch_server(
    argv: list[str], workdir: Path, instance: str, state_dir: Path, token: str, timeout: float
) -> Server:
    """Start a server process and wait for the line that gives its port."""
    env = {"CLAUDE_CODE_OAUTH_TOKEN": DUMMY_OAUTH}
    process = Process(argv, workdir / f"server-{instance}.log", env)
    try:
        line = process.expect("Berth is serving on ", timeout)
    except BaseException:
        process.stop(timeout=30)
        raise
    return Server(process, _serving_port(line), token, state_dir, instance, argv)


def start_boot_server(
    workdir: Path,
    instance: str,
    max_sessions: int = 50,
    timeout: float = 60.0,
    startup_timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """The ExternalRuntime server bootstrap (``server_boot.py``) in a subprocess."""
    state_dir, token_file, token = _prepare_state(workdir, instance)
    argv = [
        python(),
        "-m",
        "scripts.bench.server_boot",
        "--instance",
        instance,
        "--state-dir",
        str(state_dir),
        "--max-sessions",
        str(max_sessions),
        "--api-token-file",
        str(token_file),
        "--startup-timeout",
        str(startup_timeout),
        *extra_args,
    ]
    return _launch_server(argv, workdir, instance, state_dir, token, timeout)


def start_host_agent(
    workdir: Path, server: Server, sid: str, token: str, name: str, extra_env: dict[str, str] | None = None
) -> Process:
    """``python3 -m agent`` on the host with the builtin runner (token via BERTH_SESSION_TOKEN)."""
    home = workdir / f"agent-{name}"
    (home / "secrets").mkdir(parents=True, exist_ok=True)
    (home / "workspace").mkdir(parents=True, exist_ok=True)
    env = {
        "BERTH_SESSION_ID": sid,
        "BERTH_SERVER_URL": server.ws,
        "BERTH_SESSION_TOKEN": token,
        "BERTH_RUNNER": "builtin",
        "BERTH_SECRETS_DIR": str(home / "secrets"),
        "BERTH_WORKSPACE": str(home / "workspace"),
        "CLAUDE_CONFIG_DIR": str(home / "claude"),
        "HOME": str(home),
        "BERTH_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    return Process([python(), "-m", "agent"], workdir / f"agent-{name}.log", env)


# ----------------------------------------------------------------- docker


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=120)


def list_containers(client: Any, label: str) -> list[dict[str, Any]]:
    """Containers (running or not) with ``label`` (low-level API: no per-container inspect race)."""
    found: list[dict[str, Any]] = client.api.containers(all=True, filters={"label": label})
    return found


def inspect(client: Any, container_id: str) -> dict[str, Any] | None:
    import docker.errors

    try:
        attrs: dict[str, Any] = client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    return attrs


def remove_instance_containers(client: Any, instance: str) -> int:
    """Force-remove every container labelled ``berth.instance=<instance>``."""
    import docker.errors

    removed = 0
    for container in list_containers(client, f"berth.instance={instance}"):
        try:
            client.api.remove_container(container["Id"], force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:  # e.g. removal already in progress
            print(f"  cleanup: {container['Id'][:12]}: {exc}", file=sys.stderr)
    return removed


def wait_containers_gone(client: Any, label: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not list_containers(client, label):
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------- context


@dataclass
class Context:
    """What every benchmark gets from the runner."""

    workdir: Path
    results_dir: Path
    prefix: str
    quick: bool
    profile: bool
    instances: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def instance(self, name: str) -> str:
        iid = f"{self.prefix}-{name}"
        self.instances.append(iid)
        return iid

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def note_command(self, argv: list[str]) -> None:
        text = " ".join(argv)
        if text not in self.commands:
            self.commands.append(text)


def row(
    label: str,
    unit: str,
    values: Iterable[float],
    floor_label: str | None = None,
    floor_values: Iterable[float] | None = None,
    higher_is_better: bool = False,
) -> dict[str, Any]:
    """A table row: a series, and the floor it is compared with (same run)."""
    out: dict[str, Any] = {
        "label": label,
        "unit": unit,
        "stats": summarize(values),
        "higher_is_better": higher_is_better,
    }
    if floor_values is not None:
        out["floor_label"] = floor_label
        out["floor_stats"] = summarize(floor_values)
    return out
