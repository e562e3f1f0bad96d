"""The Docker engine behind ``ContainerRuntime``, through the Docker SDK.

An engine that does not answer reads the same everywhere (create, remove,
list, the exit watch, the log and a session's history): "the Docker engine at
<url> is not reachable: <reason>".
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests.exceptions

from actors.runtime import (
    Closeable,
    ContainerRecord,
    ContainerSpec,
    EngineUnavailable,
    ExitCallback,
    ImageMissing,
    RuntimeError_,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "unix:///var/run/docker.sock"

START_HELP = (
    " Start one (as root: `bash scripts/docker-up.sh`, which installs Debian's docker.io if needed) "
    "or point DOCKER_HOST at a running engine."
)


def unreachable(url: str, exc: BaseException) -> EngineUnavailable:
    return EngineUnavailable(f"the Docker engine at {url} is not reachable: {_reason(exc)}")


def connect(timeout: float = 30.0, url: str | None = None) -> docker.DockerClient:
    """A client for the engine at ``url`` (default: the environment's), or EngineUnavailable."""
    target = url or engine_url()
    try:
        client = (
            docker.DockerClient(base_url=target, timeout=int(timeout))
            if url
            else docker.from_env(timeout=int(timeout))
        )
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(str(unreachable(target, exc)) + "." + START_HELP) from None
    return client


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_URL


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    """The innermost OS error ("Connection refused"), else the first line of ``exc``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if isinstance(current, TimeoutError | requests.exceptions.Timeout):
            return "it did not answer in time"
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return _short(exc)


_NETWORK_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)


def _is_network(exc: BaseException) -> bool:
    """A DockerException that only wraps a failed connection (the version probe does that)."""
    return isinstance(exc, _NETWORK_ERRORS) or isinstance(exc.__context__, _NETWORK_ERRORS)


class _ExitWatch:
    """Reports container deaths; when the stream breaks it subscribes again, with backoff.

    ``resumed`` runs after every successful subscription (the first included),
    so its owner can reconcile what it missed while there was none.
    """

    def __init__(
        self,
        runtime: DockerRuntime,
        labels: Mapping[str, str],
        cb: ExitCallback,
        resumed: Callable[[], None] | None,
        retry: float,
        retry_max: float,
    ) -> None:
        self._runtime = runtime
        self._filters = {
            "type": "container",
            "event": "die",
            "label": [f"{k}={v}" for k, v in labels.items()],
        }
        self._callback = cb
        self._resumed = resumed
        self._retry, self._retry_max = retry, retry_max
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        #: How many times the stream was subscribed (tests and the log read it).
        self.subscriptions = 0
        self._thread = threading.Thread(target=self._run, name="berth-docker-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self._retry
        while not self._closed.is_set():
            try:
                stream = self._runtime.client.events(decode=True, filters=self._filters)
            except Exception as exc:
                self._broken(exc, delay)
                delay = min(delay * 2, self._retry_max)
                continue
            with self._lock:
                if self._closed.is_set():
                    stream.close()
                    return
                self._stream = stream
            self.subscriptions += 1
            if self.subscriptions > 1:
                log.warning(
                    "the Docker engine at %s is back; watching container exits again", self._runtime.url
                )
            delay = self._retry
            if self._resumed is not None:
                self._resumed()
            try:
                for event in stream:
                    attrs: dict[str, str] = event.get("Actor", {}).get("Attributes", {})
                    code = int(attrs.get("exitCode", "-1"))
                    self._callback(event.get("id", ""), attrs, code)
                ended: BaseException = ConnectionError("the engine closed the event stream")
            except Exception as exc:
                ended = exc
            self._broken(ended, delay)

    def _broken(self, exc: BaseException, delay: float) -> None:
        if self._closed.is_set():
            return
        log.warning(
            "%s; watching container exits again in %.1f s", unreachable(self._runtime.url, exc), delay
        )
        self._closed.wait(delay)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        self._thread.join(timeout=5)


class DockerRuntime:
    """Blocking Docker calls; the ContainerActor runs them on worker threads."""

    def __init__(self, client: docker.DockerClient | None = None, url: str | None = None) -> None:
        self.url = url or engine_url()
        self.client = client or connect(url=url)

    @contextmanager
    def _engine(self) -> Iterator[None]:
        """Any failure to reach the engine becomes the one EngineUnavailable message."""
        try:
            yield
        except _NETWORK_ERRORS as exc:
            raise unreachable(self.url, exc) from None
        except docker.errors.DockerException as exc:
            if _is_network(exc):
                raise unreachable(self.url, exc) from None
            raise

    def run(self, spec: ContainerSpec) -> str:
        volumes = {
            host: {"bind": path, "mode": "ro" if ro else "rw"} for host, (path, ro) in spec.mounts.items()
        }
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "labels": dict(spec.labels),
            "environment": dict(spec.env),
            "volumes": volumes,
            "network_mode": spec.network,
            "detach": True,
            "init": False,
        }
        if spec.user:
            kwargs["user"] = spec.user
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.pids_limit:
            kwargs["pids_limit"] = spec.pids_limit
        if spec.command:
            kwargs["command"] = list(spec.command)
        if spec.capabilities is not None:
            kwargs["cap_drop"] = ["ALL"]
            kwargs["cap_add"] = list(spec.capabilities)
        try:
            with self._engine():
                container = self.client.containers.create(spec.image, **kwargs)
        except docker.errors.ImageNotFound:
            raise ImageMissing(
                f"The session image '{spec.image}' is not on this Docker engine. "
                "Build it with `bash scripts/build-image.sh`, or set the image in BerthConfig."
            ) from None
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"Docker could not create the container: {_explain(exc)}") from None
        except docker.errors.DockerException as exc:
            raise RuntimeError_(f"Docker could not create the container: {_short(exc)}") from None
        try:
            with self._engine():
                container.start()
        except (docker.errors.DockerException, EngineUnavailable) as exc:
            try:
                self._force_remove(container.id)
            except RuntimeError_ as cleanup:
                log.warning("could not remove container %s: %s", container.id[:12], cleanup)
            if isinstance(exc, EngineUnavailable):
                raise
            raise RuntimeError_(f"Docker could not start the container: {_explain(exc)}") from None
        return str(container.id)

    def _force_remove(self, container_id: str) -> None:
        try:
            with self._engine():
                self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise RuntimeError_(
                f"Docker could not remove container {container_id[:12]}: {_short(exc)}"
            ) from None

    def remove(self, container_id: str, stop_timeout: float) -> None:
        """Stop and remove; raises (EngineUnavailable, RuntimeError_) unless it is gone."""
        try:
            with self._engine():
                self.client.api.stop(container_id, timeout=max(0, round(stop_timeout)))
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            log.info("stop of %s failed, forcing removal: %s", container_id[:12], _short(exc))
        self._force_remove(container_id)

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            with self._engine():
                found = self.client.api.containers(all=True, filters=filters)
        except docker.errors.DockerException as exc:
            raise RuntimeError_(f"Docker could not list containers: {_short(exc)}") from None
        return [
            ContainerRecord(
                id=c["Id"],
                name=(c.get("Names") or ["?"])[0].lstrip("/"),
                labels=c.get("Labels") or {},
                running=c.get("State") in ("running", "paused", "restarting"),  # alive, not exited
                exit_code=_exit_code(c.get("Status") or ""),
            )
            for c in found
        ]

    def last_output(self, container_id: str, lines: int) -> str:
        """Best effort: "" when the container or the engine is gone (the exit is reported anyway)."""
        try:
            with self._engine():
                raw = self.client.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except (docker.errors.DockerException, EngineUnavailable) as exc:
            log.info("could not read the output of %s: %s", container_id[:12], _short(exc))
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""

    def watch_exits(
        self,
        labels: Mapping[str, str],
        callback: ExitCallback,
        resumed: Callable[[], None] | None = None,
        retry: float = 0.5,
        retry_max: float = 10.0,
    ) -> Closeable:
        return _ExitWatch(self, labels, callback, resumed, retry, retry_max)


def _exit_code(status: str) -> int | None:
    found = re.match(r"Exited \((-?\d+)\)", status)
    return int(found.group(1)) if found else None


def _explain(exc: docker.errors.DockerException) -> str:
    text = _short(exc)
    if "no space left on device" in text.lower():
        return f"{text} — the disk holding Docker's data is full; free space (docker system prune) and retry"
    return text
