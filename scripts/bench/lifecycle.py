"""Shared by the container benchmarks: a status watcher and the bare-docker floor.

``Watcher``: one client WebSocket (websocket-client) whose reader thread
notes, for every session it is subscribed to, when each status was first
seen (the arrival of the ``snapshot`` or ``session_update`` frame).

The floor of a session start is a bare container of the same image, created
and started through the Docker SDK exactly as Berth's ``DockerRuntime.run``
does (host network, a read-only bind mount at /run/berth/secrets, user 0:0
with Berth's capabilities, the same memory and pids limits), running the agent's start-up equivalent:
``python3`` importing ``agent.app`` (the agent's whole import graph) and
opening a TCP connection to the benchmark on loopback. "Up" is when that
connection is accepted.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websocket

from actors.config import BerthConfig
from actors.container import SECRETS_MOUNT
from scripts.bench.common import Server, inspect, list_containers

IMAGE = "berth-session:latest"
DEFAULTS = BerthConfig()
FLOOR_SCRIPT = (
    "import socket, sys\n"
    "import agent.app\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "s.sendall(sys.argv[2].encode())\n"
    "s.close()\n"
)
FINAL = {"error", "terminated"}


class Watcher:
    def __init__(self, server: Server) -> None:
        self.ws = websocket.create_connection(
            server.ws + "/ws",
            header=[f"Authorization: Bearer {server.api_token}"],
            skip_utf8_validation=True,
            enable_multithread=True,
            timeout=30,
        )
        self.ws.settimeout(0.5)
        self.seen: dict[str, dict[str, float]] = {}
        self.reasons: dict[str, str] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                _op, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                return
            now = time.perf_counter()
            if not data.startswith((b'{"type":"session_update"', b'{"type":"snapshot"')):
                continue
            frame = json.loads(data)
            sid, info = frame.get("sessionId"), frame.get("session") or {}
            status = info.get("status")
            if not sid or not status:
                continue
            with self._cond:
                self.seen.setdefault(sid, {}).setdefault(status, now)
                if info.get("statusReason"):
                    self.reasons[sid] = info["statusReason"]
                self._cond.notify_all()

    def subscribe(self, sid: str) -> None:
        self.ws.send(json.dumps({"type": "subscribe", "sessionId": sid}))

    def unsubscribe(self, sid: str) -> None:
        self.ws.send(json.dumps({"type": "unsubscribe", "sessionId": sid}))

    def wait(self, sid: str, wanted: str, timeout: float) -> tuple[str, float | None]:
        """("idle", time) when ``wanted`` is seen; (final status, None) or ("timeout", None)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = self.seen.get(sid, {})
                if wanted in seen:
                    return wanted, seen[wanted]
                final = next((s for s in FINAL if s in seen), None)
                if final:
                    return final, None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout", None
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stop = True
        try:
            self.ws.close()
        except Exception:
            pass
        self._thread.join(timeout=5)


class Arrivals:
    """A loopback listener noting when each floor container's connection arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.times: dict[str, float] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bench-arrivals", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            now = time.perf_counter()
            conn.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            finally:
                conn.close()
            with self._cond:
                self.times[data.decode(errors="replace")] = now
                self._cond.notify_all()

    def wait(self, name: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while name not in self.times:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self.times[name]

    def close(self) -> None:
        self.sock.close()


def secrets_dir(workdir: Path) -> Path:
    """A directory like Berth's per-session secrets dir (0700, owned by the agent's uid)."""
    path = Path(tempfile.mkdtemp(prefix="floor-secrets-", dir=workdir))
    (path / "session-token").write_text("floor\n")
    for p in (path, path / "session-token"):
        os.chown(p, 1000, 1000)
    path.chmod(0o700)
    return path


def start_floor_container(client: Any, instance: str, port: int, secrets: Path) -> tuple[Any, str]:
    name = f"{instance}-floor-{uuid.uuid4().hex[:10]}"
    container = client.containers.create(
        IMAGE,
        command=["python3", "-c", FLOOR_SCRIPT, str(port), name],
        name=name,
        labels={"berth.app": "berth-bench-floor", "berth.instance": instance, "berth.session": name},
        environment={
            "BERTH_SESSION_ID": name,
            "BERTH_SERVER_URL": "ws://127.0.0.1:9",
            "BERTH_SECRETS_DIR": SECRETS_MOUNT,
            "BERTH_RUNNER": "builtin",
        },
        volumes={str(secrets): {"bind": SECRETS_MOUNT, "mode": "ro"}},
        network_mode="host",
        detach=True,
        init=False,
        user=DEFAULTS.container_user,
        cap_drop=["ALL"],
        cap_add=list(DEFAULTS.container_capabilities or ()),
        mem_limit="4g",
        pids_limit=512,
    )
    container.start()
    return container, name


def docker_time(text: str | None) -> float | None:
    """A Docker RFC 3339 timestamp (nanoseconds) as Unix seconds."""
    if not text or text.startswith("0001-"):
        return None
    base, _, frac = text.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{base}.{frac}").replace(tzinfo=UTC).timestamp()


def container_times(client: Any, container_id: str) -> tuple[float | None, float | None]:
    """(created, started) of a container as Unix seconds."""
    attrs = inspect(client, container_id)
    if attrs is None:
        return None, None
    return docker_time(attrs.get("Created")), docker_time(attrs.get("State", {}).get("StartedAt"))


def session_container(client: Any, sid: str) -> str | None:
    found = list_containers(client, f"berth.session={sid}")
    return str(found[0]["Id"]) if found else None
