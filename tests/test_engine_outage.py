"""Engine outages, against a private dockerd the test stops and restarts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from actors.api import Berth
from actors.docker_runtime import DockerRuntime
from actors.runtime import LABEL_SESSION
from tests.conftest import TreeFactory, docker_runtime_or_skip
from tests.private_dockerd import IMAGE, SLEEP, PrivateDockerd
from tests.waiting import wait_until

FAST_RETRIES: dict[str, Any] = {
    "image": IMAGE,
    "container_command": SLEEP,
    "engine_watch_retry": 0.05,
    "engine_watch_retry_max": 0.2,
    "container_remove_retry": 0.05,
    "container_remove_retry_max": 0.2,
}


@pytest.fixture(scope="module")
def dockerd() -> Iterator[PrivateDockerd]:
    docker_runtime_or_skip()
    engine = PrivateDockerd()
    try:
        engine.start()
        engine.load_image()
        yield engine
    finally:
        engine.cleanup()


@pytest.fixture
def engine(dockerd: PrivateDockerd) -> Iterator[PrivateDockerd]:
    """The private engine, up at the start and at the end of each test."""
    if dockerd.proc is None:
        dockerd.start()
    yield dockerd
    if dockerd.proc is None:
        dockerd.start()


def _container_of(engine: PrivateDockerd, sid: str) -> dict[str, Any] | None:
    found = engine.client().api.containers(all=True, filters={"label": f"{LABEL_SESSION}={sid}"})
    return found[0] if found else None


def _running_container(berth: Berth, engine: PrivateDockerd, sid: str) -> Any:
    def running() -> Any:
        info = berth.get_session(sid).info
        assert not info.status.is_final, f"the session ended: {info.status_reason}"
        container = _container_of(engine, sid)
        if container is None or container["State"] != "running":
            return None
        return engine.client().containers.get(container["Id"])

    return wait_until(running, timeout=30, what=f"the container of session {sid} to run")


def test_a_container_that_died_while_the_engine_was_down_ends_its_session_with_its_exit_code(
    tree: TreeFactory, engine: PrivateDockerd
) -> None:
    berth = tree(runtime=DockerRuntime(url=engine.url), **FAST_RETRIES)
    sid = berth.create_session(name="outage")
    pid = _running_container(berth, engine, sid).attrs["State"]["Pid"]
    engine.stop()
    os.kill(pid, signal.SIGKILL)
    engine.start()
    view = berth.wait_for_status(sid, {"error"}, timeout=30)
    assert view.info.status_reason.startswith("Session container exited unexpectedly (exit code 137)")


def test_exits_are_noticed_after_the_engine_restarted(tree: TreeFactory, engine: PrivateDockerd) -> None:
    berth = tree(runtime=DockerRuntime(url=engine.url), **FAST_RETRIES)
    engine.stop()
    engine.start()
    sid = berth.create_session(name="after the restart")
    _running_container(berth, engine, sid).kill()
    view = berth.wait_for_status(sid, {"error"}, timeout=30)
    assert view.info.status_reason.startswith("Session container exited unexpectedly (exit code 137)")


def test_a_create_while_the_engine_is_down_names_the_engine_and_the_reason(
    tree: TreeFactory, engine: PrivateDockerd
) -> None:
    berth = tree(runtime=DockerRuntime(url=engine.url), **FAST_RETRIES)
    engine.stop()
    sid = berth.create_session(name="no engine")
    view = berth.wait_for_status(sid, {"error"}, timeout=30)
    expected = f"the Docker engine at {engine.url} is not reachable: "
    assert view.info.status_reason is not None and expected in view.info.status_reason
    assert "ConnectionError" not in view.info.status_reason
    assert any(expected in m.content for m in view.history if m.kind == "error")


def test_a_container_whose_removal_failed_in_an_outage_is_removed_once_the_engine_is_back(
    tree: TreeFactory, engine: PrivateDockerd
) -> None:
    berth = tree(runtime=DockerRuntime(url=engine.url), **FAST_RETRIES)
    sid = berth.create_session(name="removed later")
    _running_container(berth, engine, sid)
    secrets = tree.started[-1][2].secrets_root / sid
    assert secrets.is_dir()
    engine.stop()
    berth.delete_session(sid)
    engine.start()
    wait_until(lambda: _container_of(engine, sid) is None, timeout=30, what="the retried removal")
    wait_until(lambda: not secrets.exists(), timeout=10, what="the secrets dir to go with it")
