"""An in-process container runtime for fast unit tests (real Docker is tested too)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from actors.container import SECRETS_MOUNT
from actors.runtime import ContainerRecord, ContainerSpec, ExitCallback, ImageMissing


@dataclass
class StubContainer:
    id: str
    spec: ContainerSpec
    running: bool = True
    secrets_seen: dict[str, str] = field(default_factory=dict)
    #: What ``last_output`` says the container printed.
    output: str = ""


class _Watch:
    def __init__(self, runtime: StubRuntime, labels: Mapping[str, str], cb: ExitCallback) -> None:
        self.runtime, self.labels, self.cb = runtime, dict(labels), cb

    def close(self) -> None:
        with self.runtime.lock:
            if self in self.runtime.watches:
                self.runtime.watches.remove(self)


class StubRuntime:
    """Containers are records; ``gate`` can hold starts to make them slow."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.containers: dict[str, StubContainer] = {}
        self.watches: list[_Watch] = []
        self.missing_images: set[str] = set()
        self.fail_with: Exception | None = None
        self.gate: threading.Event | None = None
        #: Held by the next ``run`` only: one slow start among fast ones.
        self.hold_next: threading.Event | None = None
        self.started = threading.Semaphore(0)
        self.removed: list[str] = []
        self._ids = itertools.count(1)

    def run(self, spec: ContainerSpec) -> str:
        if self.gate is not None:
            self.gate.wait(timeout=30)
        with self.lock:
            hold, self.hold_next = self.hold_next, None
        if hold is not None:
            hold.wait(timeout=30)
        if spec.image in self.missing_images:
            raise ImageMissing(f"The session image '{spec.image}' is not on this Docker engine.")
        if self.fail_with is not None:
            raise self.fail_with
        secrets = {}
        for host_path, (target, _) in spec.mounts.items():
            if target == SECRETS_MOUNT:
                import pathlib

                secrets = {p.name: p.read_text() for p in pathlib.Path(host_path).iterdir()}
        container = StubContainer(f"stub{next(self._ids):060d}", spec, secrets_seen=secrets)
        with self.lock:
            self.containers[container.id] = container
        self.started.release()
        return container.id

    def remove(self, container_id: str, stop_timeout: float) -> None:
        with self.lock:
            self.containers.pop(container_id, None)
            self.removed.append(container_id)

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        with self.lock:
            return [
                ContainerRecord(c.id, c.spec.name, c.spec.labels, c.running)
                for c in self.containers.values()
                if all(c.spec.labels.get(k) == v for k, v in labels.items())
            ]

    def last_output(self, container_id: str, lines: int) -> str:
        with self.lock:
            container = self.containers.get(container_id)
            return "\n".join(container.output.splitlines()[-lines:]) if container else ""

    def watch_exits(
        self,
        labels: Mapping[str, str],
        callback: ExitCallback,
        resumed: Callable[[], None] | None = None,
        retry: float = 0.5,
        retry_max: float = 10.0,
    ) -> _Watch:
        watch = _Watch(self, labels, callback)
        with self.lock:
            self.watches.append(watch)
        return watch

    def exit(self, container_id: str, code: int, output: str = "") -> None:
        """The container stops on its own, having printed ``output``."""
        with self.lock:
            container = self.containers[container_id]
            container.running = False
            container.output += output
            watches = list(self.watches)
        for watch in watches:
            if all(container.spec.labels.get(k) == v for k, v in watch.labels.items()):
                watch.cb(container_id, container.spec.labels, code)

    def by_session(self, session_id: str) -> StubContainer | None:
        with self.lock:
            for c in self.containers.values():
                if c.spec.labels.get("berth.session") == session_id:
                    return c
        return None
