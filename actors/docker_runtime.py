"""The Docker engine behind ``ContainerRuntime``, through the Docker SDK."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors

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

ENGINE_HELP = (
    "No Docker engine is reachable ({detail}). Start one (as root: "
    "`bash scripts/docker-up.sh`, which installs Debian's docker.io if needed) "
    "or point DOCKER_HOST at a running engine."
)


def connect(timeout: float = 30.0) -> docker.DockerClient:
    """A client for the engine in the environment, or EngineUnavailable."""
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(ENGINE_HELP.format(detail=_short(exc))) from None
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class _ExitWatch:
    def __init__(self, client: docker.DockerClient, labels: Mapping[str, str], cb: ExitCallback):
        filters = {"type": "container", "event": "die", "label": [f"{k}={v}" for k, v in labels.items()]}
        self._stream = client.events(decode=True, filters=filters)
        self._callback = cb
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="berth-docker-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                attrs: dict[str, str] = event.get("Actor", {}).get("Attributes", {})
                code = int(attrs.get("exitCode", "-1"))
                self._callback(event.get("id", ""), attrs, code)
        except Exception as exc:  # the stream ends with an error when closed
            if not self._closed.is_set():
                log.warning("docker event stream ended: %s", _short(exc))

    def close(self) -> None:
        self._closed.set()
        self._stream.close()
        self._thread.join(timeout=5)


class DockerRuntime:
    """Blocking Docker calls; the ContainerActor runs them on worker threads."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or connect()

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
            container = self.client.containers.create(spec.image, **kwargs)
        except docker.errors.ImageNotFound:
            raise ImageMissing(
                f"The session image '{spec.image}' is not on this Docker engine. "
                "Build it with `bash scripts/build-image.sh`, or set the image in BerthConfig."
            ) from None
        except docker.errors.APIError as exc:
            raise RuntimeError_(f"Docker could not create the container: {_explain(exc)}") from None
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(ENGINE_HELP.format(detail=_short(exc))) from None
        try:
            container.start()
        except docker.errors.DockerException as exc:
            self._force_remove(container.id)
            raise RuntimeError_(f"Docker could not start the container: {_explain(exc)}") from None
        return str(container.id)

    def _force_remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            log.warning("could not remove container %s: %s", container_id[:12], _short(exc))

    def remove(self, container_id: str, stop_timeout: float) -> None:
        try:
            self.client.api.stop(container_id, timeout=max(0, round(stop_timeout)))
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            log.info("stop of %s failed, forcing removal: %s", container_id[:12], _short(exc))
        self._force_remove(container_id)

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self.client.api.containers(all=True, filters=filters)
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(ENGINE_HELP.format(detail=_short(exc))) from None
        return [
            ContainerRecord(
                id=c["Id"],
                name=(c.get("Names") or ["?"])[0].lstrip("/"),
                labels=c.get("Labels") or {},
                running=c.get("State") == "running",
            )
            for c in found
        ]

    def watch_exits(self, labels: Mapping[str, str], callback: ExitCallback) -> Closeable:
        return _ExitWatch(self.client, labels, callback)


def _explain(exc: docker.errors.DockerException) -> str:
    text = _short(exc)
    if "no space left on device" in text.lower():
        return f"{text} — the disk holding Docker's data is full; free space (docker system prune) and retry"
    return text
