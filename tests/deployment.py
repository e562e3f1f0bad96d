"""A Berth deployment as an operator runs it: ``berth serve`` processes on one
state dir, instance id and port, started, killed and started again, with
real session containers on the local Docker engine."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import docker

from actors.runtime import LABEL_INSTANCE, LABEL_SESSION
from tests.conftest import SESSION_IMAGE
from tests.ports import free_port
from tests.rest_client import rest_call
from tests.server_process import ServerProcess
from tests.waiting import wait_until
from tests.ws_client import WsPeer

API_TOKEN = "restart-api-token-0123456789abcdefghijklmnopqrstuvwxyz"

#: Short durations for tests; agents retry fast so a restart costs little.
TEST_SETTINGS = {
    "reconnect_grace": "30",
    "agent_backoff_cap": "0.1",
    "eviction_ttl": "120",
    "startup_timeout": "60",
    "container_stop_timeout": "0",
    "store_flush_interval": "0.02",
}


class Deployment:
    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.state = root / "state"
        self.instance = f"r{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.token_file = root / "api-token"
        self.token_file.write_text(API_TOKEN)
        self.settings = {**TEST_SETTINGS, **settings}
        self.server: ServerProcess | None = None
        self.url = ""
        self.docker = docker.from_env()

    def start(self, *flags: str) -> ServerProcess:
        sets = [arg for key, value in self.settings.items() for arg in (f"--{key.replace('_', '-')}", value)]
        self.server = ServerProcess(
            "serve",
            "--state-dir",
            str(self.state),
            "--instance",
            self.instance,
            "--port",
            str(self.port),
            "--api-token-file",
            str(self.token_file),
            "--image",
            SESSION_IMAGE,
            *sets,
            *flags,
        )
        self.url = self.server.wait_serving()
        return self.server

    def kill9(self) -> None:
        assert self.server is not None
        self.server.kill9()
        self.server = None

    def terminate(self) -> None:
        assert self.server is not None
        assert self.server.terminate() == 0, "".join(self.server.stderr)
        self.server = None

    # ------------------------------------------------------------ as a client

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return rest_call(self.url, API_TOKEN, method, path, body)

    def create(self, name: str = "restart") -> str:
        status, created = self.call("POST", "/api/sessions", {"name": name})
        assert status == 201, created
        return str(created["session"]["id"])

    def session(self, sid: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/api/sessions/{sid}")
        assert status == 200, body
        return dict(body)

    def status(self, sid: str) -> str:
        return str(self.session(sid)["session"]["status"])

    def wait_status(self, sid: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        last: list[Any] = []

        def reached() -> dict[str, Any] | None:
            body = self.session(sid)
            last[:] = [body["session"]["status"], body["session"].get("statusReason")]
            return body if body["session"]["status"] in statuses else None

        try:
            found = wait_until(reached, timeout=timeout, what=f"{sid} to be {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {last}") from None
        assert found is not None
        return found

    def make_durable(self, sid: str) -> None:
        """A command's answer waits for the store: everything before it is stored."""
        status, body = self.call("PATCH", f"/api/sessions/{sid}/settings", {"name": "durable"})
        assert status == 202, body

    def client(self) -> WsPeer:
        return WsPeer(f"ws://127.0.0.1:{self.port}/ws", [f"Authorization: Bearer {API_TOKEN}"])

    # ------------------------------------------------------------ the engine

    def containers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.docker.api.containers(
            all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}
        )
        return found

    def container_of(self, sid: str) -> dict[str, Any] | None:
        for container in self.containers():
            if container["Labels"].get(LABEL_SESSION) == sid:
                return container
        return None

    def secrets_dirs(self) -> list[str]:
        root = self.state / "secrets" / self.instance
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.stop()
        for container in self.containers():
            self.docker.api.remove_container(container["Id"], force=True)

    def assert_nothing_left(self) -> None:
        """After deleting every session and a stop: no container, no secrets dir."""
        wait_until(lambda: not self.containers(), timeout=30, what="every container to be removed")
        wait_until(
            lambda: self.secrets_dirs() == [], timeout=10, what="every secrets directory to be removed"
        )


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [int(f["seq"]) for f in frames if "seq" in f and f.get("type") != "snapshot"]


def now() -> float:
    return time.monotonic()
