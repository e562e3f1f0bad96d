"""What Berth needs from a container engine, independent of Docker.

``DockerRuntime`` (docker_runtime.py) is the real one; tests also use an
in-process stub with the same shape. Every method may block: only the
ContainerActor's worker threads call them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

LABEL_APP = "berth.app"
LABEL_INSTANCE = "berth.instance"
LABEL_SESSION = "berth.session"


class RuntimeError_(Exception):
    """A container engine failure, with a message that names the fix."""


class EngineUnavailable(RuntimeError_):
    pass


class ImageMissing(RuntimeError_):
    pass


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    #: host path -> (container path, read_only)
    mounts: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    network: str = "host"
    user: str | None = None
    memory: str | None = None
    pids_limit: int | None = None
    command: tuple[str, ...] | None = None
    #: Linux capabilities kept (all others dropped); None: the engine's default set.
    capabilities: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    name: str
    labels: Mapping[str, str]
    running: bool
    #: The exit code of a container that exited (None while it runs, or unknown).
    exit_code: int | None = None


#: Called with (container id, labels, exit code) when a labelled container dies.
ExitCallback = Callable[[str, Mapping[str, str], int], None]


class Closeable(Protocol):
    def close(self) -> None: ...


class ContainerRuntime(Protocol):
    def run(self, spec: ContainerSpec) -> str:
        """Create and start a container; return its id. Cleans up on failure."""
        ...

    def remove(self, container_id: str, stop_timeout: float) -> None:
        """Stop and remove; a container that is already gone is fine."""
        ...

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        """All containers (running or not) carrying every given label."""
        ...

    def last_output(self, container_id: str, lines: int) -> str:
        """The last ``lines`` lines a container printed (stdout and stderr); "" if unknown."""
        ...

    def watch_exits(
        self,
        labels: Mapping[str, str],
        callback: ExitCallback,
        resumed: Callable[[], None] | None = None,
        retry: float = 0.5,
        retry_max: float = 10.0,
    ) -> Closeable:
        """Report every exit of a container carrying ``labels`` until closed.

        When the engine's stream breaks, subscribe again after ``retry``
        seconds, doubling up to ``retry_max``; call ``resumed`` after every
        subscription so the caller can reconcile exits it may have missed.
        """
        ...


class ExternalRuntime:
    """Agents run elsewhere (started by the host app or a load generator).

    Sessions still get their tokens and timers; "starting a container" only
    records that the session waits for its agent to connect.
    """

    def __init__(self) -> None:
        self._count = 0

    def run(self, spec: ContainerSpec) -> str:
        self._count += 1
        return f"external-{spec.labels.get(LABEL_SESSION, self._count)}"

    def remove(self, container_id: str, stop_timeout: float) -> None:
        """Nothing to stop: the agent's owner does that."""

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        return []

    def last_output(self, container_id: str, lines: int) -> str:
        return ""

    def watch_exits(
        self,
        labels: Mapping[str, str],
        callback: ExitCallback,
        resumed: Callable[[], None] | None = None,
        retry: float = 0.5,
        retry_max: float = 10.0,
    ) -> Closeable:
        return _NoWatch()


class _NoWatch:
    def close(self) -> None:
        pass
