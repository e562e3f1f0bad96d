"""The Claude Code benchmark's measuring side, run inside a loopback-only namespace.

``b_claude`` starts a ``--network none`` holder container and runs this
module in its network namespace (``nsenter --net``), so the fake Messages
API, the Berth servers, the session containers (which join the holder's
namespace) and the floor's CLI all share loopback and nothing else. Prints
one ``RESULT <json>`` line with every sample.

Floor: the same bundled Claude Code CLI driven directly by
``ClaudeSDKClient`` on the host, with the runner's options, against the same
fake API: its start-up + first token (cold) and, on a connected CLI, prompt →
first token and prompt → result (warm turns). Berth: sessions of the SDK
image through a real server (REST create, client WebSocket), cold, claimed
from a warm pool, warm turns, and a session whose CLI is parked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

API_TOKEN = "bench-claude-api-token-0123456789abcdefghijklmnopqrstuvwxyz"
TOKEN = "sk-ant-oat01-bench-claude-token-AAAAAAAA"
IMAGE = os.environ.get("BERTH_BENCH_SDK_IMAGE", "berth-session-sdk:latest")
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
TIMEOUT = 180.0


# ---------------------------------------------------------------- the floor


class Floor:
    """The bundled CLI driven directly by ``ClaudeSDKClient``, on a loop of its own
    thread, so that its runs interleave with Berth's and drift hits both alike."""

    def __init__(self, api_url: str, work: Path) -> None:
        from claude_agent_sdk import ClaudeAgentOptions

        from agent.credentials import write_access_token

        home, workspace, config_dir = work / "floor-home", work / "floor-ws", work / "floor-claude"
        for d in (home, workspace, config_dir):
            d.mkdir(parents=True, exist_ok=True)
        write_access_token(config_dir / ".credentials.json", TOKEN, None)
        os.environ["HOME"] = str(home)
        self.options = ClaudeAgentOptions(
            cwd=str(workspace),
            include_partial_messages=True,
            can_use_tool=_allow,
            permission_mode="default",
            env={"ANTHROPIC_BASE_URL": api_url, "CLAUDE_CONFIG_DIR": str(config_dir), **QUIET},
            system_prompt={"type": "preset", "preset": "claude_code", "append": "You are benchmarked."},
            setting_sources=["user", "project"],
        )
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="floor", daemon=True).start()
        self.warm = self._call(self._open())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    async def _open(self) -> tuple[Any, Any, float]:
        from claude_agent_sdk import ClaudeSDKClient

        client = ClaudeSDKClient(self.options)
        t0 = time.perf_counter()
        await client.connect()
        return client, client.receive_messages().__aiter__(), time.perf_counter() - t0

    @staticmethod
    async def _turn(conn: tuple[Any, Any, float], prompt: str) -> tuple[float, float]:
        from claude_agent_sdk import ResultMessage, StreamEvent

        client, messages, _ = conn
        started = time.perf_counter()
        await client.query(prompt)
        first = None
        async for message in messages:
            delta = isinstance(message, StreamEvent) and message.event.get("type") == "content_block_delta"
            if first is None and delta:
                first = time.perf_counter() - started
            if isinstance(message, ResultMessage):
                break
        return first or float("nan"), time.perf_counter() - started

    def warm_turn(self, prompt: str) -> tuple[float, float]:
        """Prompt → first token, prompt → result on the long-lived CLI."""
        result: tuple[float, float] = self._call(self._turn(self.warm, prompt))
        return result

    def fresh(self, prompt: str, idle: float) -> tuple[float, float]:
        """A new CLI: (spawn + handshake, first prompt → first token), the prompt
        sent ``idle`` seconds after the handshake."""

        async def go() -> tuple[float, float]:
            conn = await self._open()
            await asyncio.sleep(idle)
            first, _ = await self._turn(conn, prompt)
            await conn[0].disconnect()
            return conn[2], first

        result: tuple[float, float] = self._call(go())
        return result

    def close(self) -> None:
        self._call(self.warm[0].disconnect())
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _allow(*_: Any) -> Any:
    from claude_agent_sdk import PermissionResultAllow

    return PermissionResultAllow()


# ---------------------------------------------------------------- Berth


class _Served:
    """``berth serve`` (this worktree's code) in its own process: the server never
    shares a GIL with the client, the floor or the fake API."""

    def __init__(self, work: Path, name: str, flags: dict[str, Any]) -> None:
        from types import SimpleNamespace

        from scripts.bench.common import Process

        self.instance = f"benchcc{os.getpid()}{name}"
        state = work / f"state-{name}"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        token_file = work / f"api-token-{name}"
        token_file.write_text(API_TOKEN + "\n")
        token_file.chmod(0o600)
        argv = [
            sys.executable,
            "-m",
            "transport.cli",
            "serve",
            "--port",
            "0",
            "--api-token-file",
            str(token_file),
        ]
        argv += ["--instance-id", self.instance, "--state-dir", str(state)]
        for key, value in flags.items():
            argv += [
                f"--{key.replace('_', '-')}",
                str(value).lower() if isinstance(value, bool) else str(value),
            ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        self.process = Process(argv, work / f"server-{name}.log", env)
        line = self.process.expect("Berth is serving on ", TIMEOUT)
        port = int(line.split()[4].rsplit(":", 1)[1].rstrip("/"))
        self.server = SimpleNamespace(http_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}")

    def pool_ready(self, docker_client: Any) -> int:
        """Unclaimed pooled containers whose agent connected (it does once its CLI is up
        and warm); a claimed one keeps its pool label and its log, but has an assignment."""
        from docker.errors import APIError

        ready = 0
        for c in self.containers(docker_client):
            try:
                if c.labels.get("berth.session", "").startswith("pool-") and b"connected to" in c.logs():
                    # Exit 1: no assignment file. A claimed container being removed
                    # fails the exec instead, and does not count.
                    probe = "test -e /run/berth/assignment.json || test -e /home/berth/.berth/assignment.json"
                    ready += c.exec_run(["sh", "-c", probe]).exit_code == 1
            except APIError:  # being removed
                continue
        return ready

    def containers(self, docker_client: Any) -> list[Any]:
        """This server's running containers."""
        found: list[Any] = docker_client.containers.list(filters={"label": f"berth.instance={self.instance}"})
        return found

    def stop(self) -> None:
        self.process.stop(timeout=90)


class _Client:
    def __init__(self, running: Any) -> None:
        from tests.ws_client import WsPeer

        self.running = running
        self.ws = WsPeer(f"{running.server.ws_url}/ws", [f"Authorization: Bearer {API_TOKEN}"], timeout=30)

    def create(self) -> str:
        from tests.rest_client import rest_call

        code, body = rest_call(
            self.running.server.http_url, API_TOKEN, "POST", "/api/sessions", {"name": "b"}
        )
        assert code == 201, body
        sid = str(body["session"]["id"])
        self.ws.send({"type": "subscribe", "sessionId": sid})
        return sid

    def wait_idle(self, sid: str) -> float:
        def idle(f: dict[str, Any]) -> bool:
            session = f.get("session") or {}
            return f["type"] in ("session_update", "snapshot") and session.get("status") in ("idle", "error")

        frame, _ = self.ws.recv_until(lambda f: f.get("sessionId") == sid and idle(f), timeout=TIMEOUT)
        assert frame["session"]["status"] == "idle", frame
        return time.perf_counter()

    def turn(self, sid: str, prompt: str) -> tuple[float, float, float]:
        """(sent at, first token at, result at), perf_counter seconds."""
        sent = time.perf_counter()
        self.ws.send({"type": "send_prompt", "sessionId": sid, "content": prompt})
        first = None
        while True:
            frame = self.ws.recv(timeout=TIMEOUT)
            if frame.get("sessionId") != sid:
                continue
            if frame["type"] == "stream" and first is None:
                first = time.perf_counter()
            if frame["type"] == "result":
                assert not frame["isError"], frame
                return sent, first or float("nan"), time.perf_counter()


def _agent_connected_at(docker_client: Any, container_id: str) -> float | None:
    from scripts.bench.b_cold import _agent_connected_at as connected_at

    return connected_at(docker_client, container_id)


def _agent_log(container: Any, pattern: str) -> float | None:
    match = re.findall(pattern, container.logs().decode(errors="replace"))
    return float(match[-1]) if match else None


def _session_container(docker_client: Any, sid: str, pooled: set[str]) -> Any:
    for c in docker_client.containers.list():
        if c.labels.get("berth.session") == sid:
            return c
        if c.id in pooled:
            files = "/run/berth/assignment.json /home/berth/.berth/assignment.json"
            assignment = c.exec_run(["sh", "-c", f"cat {files} 2>/dev/null"]).output.decode()
            if f'"sessionId":"{sid}"' in assignment:
                return c
    return None


def _memory_mib(container: Any) -> float:
    """The container's anonymous memory (what its processes hold, page cache left out)."""
    for path, key in (
        ("/sys/fs/cgroup/memory.stat", "anon"),
        ("/sys/fs/cgroup/memory/memory.stat", "total_rss"),
    ):
        out = container.exec_run(["cat", path])
        if out.exit_code == 0:
            for line in out.output.decode().splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value) / 2**20
    return float("nan")


def _cli_running(container: Any) -> bool:
    probe = (
        "import os, sys\n"
        "cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc') if p.isdigit()]\n"
        "sys.exit(0 if any(c.split(b'\\0')[0].endswith(b'/claude') for c in cmds) else 1)\n"
    )
    return container.exec_run(["python3", "-c", probe]).exit_code == 0


def _berth(
    work: Path,
    flags: dict[str, Any],
    docker_client: Any,
    floor: Floor,
    repeats: int,
    turns: int,
    long_idle: float,
) -> dict[str, Any]:
    from tests.waiting import wait_until

    out: dict[str, Any] = {"cold": [], "warm_pool": [], "warm_first_token_s": [], "warm_round_trip_s": []}
    fl: dict[str, list[float]] = {
        k: [] for k in ("cold_connect_s", "cold_first_token_s", "started_first_token_s", "warm_first_token_s")
    }
    fl["warm_round_trip_s"] = []
    out["floor"] = fl
    running = _Served(work, "cold", flags)
    try:
        c = _Client(running)
        for i in range(repeats):
            connect, first = floor.fresh(f"floor cold {i}", 0.0)
            fl["cold_connect_s"].append(connect)
            fl["cold_first_token_s"].append(connect + first)
            w0, t0 = time.time(), time.perf_counter()
            sid = c.create()
            sent, first, _ = c.turn(sid, f"cold {i}")  # queued until the session is idle
            container = _session_container(docker_client, sid, set())
            created, started = _container_times(container)
            connected = _agent_connected_at(docker_client, container.id)
            out["cold"].append(
                {
                    "first_token_s": first - t0,
                    "to_created_s": created - w0 if created else None,
                    "container_started_s": started - created if created and started else None,
                    "to_agent_connected_s": connected - started if connected and started else None,
                    "cli_start_s": _agent_log(container, r"Claude Code started in ([0-9.]+) s"),
                    "create_s": sent - t0,
                }
            )
            if i == 0:
                for j in range(turns):
                    floor_first, floor_trip = floor.warm_turn(f"floor warm {j}")
                    fl["warm_first_token_s"].append(floor_first)
                    fl["warm_round_trip_s"].append(floor_trip)
                    s, f, r = c.turn(sid, f"warm {j}")
                    out["warm_first_token_s"].append(f - s)
                    out["warm_round_trip_s"].append(r - s)
                out["idle_mib_running"] = _memory_mib(container)
                if long_idle:
                    # A prompt after a pause, as a user types one: both CLIs sat idle as long.
                    time.sleep(long_idle)
                    fl["after_idle_first_token_s"] = [floor.warm_turn("floor after a pause")[0]]
                    s, f, _ = c.turn(sid, "after a pause")
                    out["after_idle_first_token_s"] = [f - s]
            rest_delete(running, sid)
    finally:
        running.stop()

    running = pool = _Served(work, "pool", {**flags, "warm_pool_size": 1, "max_sessions": 2})
    try:
        c = _Client(running)
        for i in range(repeats):
            wait_until(lambda: pool.pool_ready(docker_client) >= 1, TIMEOUT, "a warm pooled Claude Code")
            fl["started_first_token_s"].append(floor.fresh(f"floor started {i}", 1.0)[1])
            t0 = time.perf_counter()
            sid = c.create()
            ready = c.wait_idle(sid)
            # Every other run waits for the pool's replacement to be up: its CLI
            # start competes for the CPU with the first prompt otherwise.
            quiet = i % 2 == 1
            if quiet:
                wait_until(lambda: pool.pool_ready(docker_client) >= 1, TIMEOUT, "the pool refilled")
            sent, first, result = c.turn(sid, f"pooled {i}")
            # Its second prompt: what the stand-in's forwarding hop costs a later turn.
            sent2, first2, _ = c.turn(sid, f"pooled {i} again")
            labels = {x.id: x.labels.get("berth.session", "") for x in pool.containers(docker_client)}
            pooled_ids = {cid for cid, label in labels.items() if label.startswith("pool-")}
            claimed = _session_container(docker_client, sid, pooled_ids)
            if claimed is not None:  # its agent's log, kept with the results
                (work / f"pooled-{i}.log").write_bytes(claimed.logs(timestamps=True))
            out["warm_pool"].append(
                {
                    # False: the server found no claimable slot and started it cold.
                    "from_pool": claimed is not None and claimed.id in pooled_ids,
                    "create_to_idle_s": ready - t0,
                    "first_token_s": first - sent,
                    "round_trip_s": result - sent,
                    "second_first_token_s": first2 - sent2,
                    "after_refill": quiet,
                }
            )
            rest_delete(running, sid)
            # Its container gone, so the next claim is not held up by max_sessions.
            wait_until(lambda: len(pool.containers(docker_client)) <= 1, TIMEOUT, "the session's end")
        if long_idle:
            # A slot claimed after it waited in the pool, as a user's next session is.
            wait_until(lambda: pool.pool_ready(docker_client) >= 1, TIMEOUT, "a warm pooled Claude Code")
            time.sleep(long_idle)
            sid = c.create()
            c.wait_idle(sid)
            sent, first, _ = c.turn(sid, "pooled after a wait")
            out["pool_after_idle_first_token_s"] = [first - sent]
            rest_delete(running, sid)
    finally:
        running.stop()

    running = _Served(work, "park", {**flags, "claude_park_after": 1.0})
    try:
        c = _Client(running)
        sid = c.create()
        c.turn(sid, "before parking")
        container = _session_container(docker_client, sid, set())
        resumes = []
        for i in range(max(1, repeats)):
            wait_until(lambda: not _cli_running(container), 60, "the CLI to be parked")
            out.setdefault("idle_mib_parked", _memory_mib(container))
            s, f, r = c.turn(sid, f"after parking {i}")
            resumes.append({"first_token_s": f - s, "round_trip_s": r - s})
        out["resume"] = resumes
        out["resume_cli_s"] = _agent_log(container, r"Claude Code resumed its conversation in ([0-9.]+) s")
        rest_delete(running, sid)
    finally:
        running.stop()
    return out


def rest_delete(running: Any, sid: str) -> None:
    from tests.rest_client import rest_call

    rest_call(running.server.http_url, API_TOKEN, "DELETE", f"/api/sessions/{sid}")


def _container_times(container: Any) -> tuple[float | None, float | None]:
    from datetime import datetime

    def parse(text: str) -> float | None:
        if not text or text.startswith("0001"):
            return None
        text = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
        return datetime.fromisoformat(text).timestamp()

    container.reload()
    return parse(container.attrs["Created"]), parse(container.attrs["State"]["StartedAt"])


def _fake_api(work: Path) -> tuple[Any, str]:
    """The fake Messages API in its own process; (process, its URL)."""
    from scripts.bench.common import Process

    code = (
        "import sys, time\n"
        "from tests.fake_messages_api import FakeMessagesApi\n"
        "api = FakeMessagesApi().start()\n"
        "print('fake api on', api.url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = Process([sys.executable, "-c", code], work / "fake-api.log", dict(os.environ))
    return process, process.expect("fake api on ", 60).split()[-1]


def main(argv: list[str]) -> int:
    import logging

    import docker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    holder, work, repeats, turns = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    long_idle = float(argv[4]) if len(argv) > 4 else 0.0
    claude_dir = work / ".claude"
    claude_dir.mkdir(parents=True, exist_ok=True)
    far = int((time.time() + 86400) * 1000)
    login = {"claudeAiOauth": {"accessToken": TOKEN, "refreshToken": "r", "expiresAt": far}}
    (claude_dir / ".credentials.json").write_text(json.dumps(login))
    os.chmod(claude_dir / ".credentials.json", 0o600)
    result: dict[str, Any] = {}
    api, api_url = _fake_api(work)
    try:
        floor = Floor(api_url, work)
        floor.warm_turn("floor warm-up")
        flags = {
            "image": IMAGE,
            "claude_dir": claude_dir,
            "claude_dir_root": work,
            "container_network": f"container:{holder}",
            "agent_runner": "sdk",
            "startup_timeout": TIMEOUT,
            "claude_api_base_url": api_url,
            "claude_no_nonessential_traffic": True,
        }
        try:
            client = docker.from_env(timeout=120)
            result["berth"] = _berth(work, flags, client, floor, repeats, turns, long_idle)
        finally:
            floor.close()
        result["floor"] = result["berth"].pop("floor")
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        api.stop(timeout=10)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
