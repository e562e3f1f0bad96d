"""Fixtures that start a whole supervision tree and check it leaves nothing behind."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.api import Berth
from actors.clock import ManualClock
from actors.config import BerthConfig
from actors.runtime import LABEL_INSTANCE, ContainerRuntime
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until

TEST_OAUTH_TOKEN = "sk-ant-oat01-test-token-0123456789"
SESSION_IMAGE = os.environ.get("BERTH_TEST_IMAGE", "berth-session:latest")


def docker_runtime_or_skip() -> Any:
    """The real engine; without one the test fails under BERTH_REQUIRE_DOCKER=1."""
    from actors.docker_runtime import DockerRuntime
    from actors.runtime import EngineUnavailable

    try:
        return DockerRuntime()
    except EngineUnavailable as exc:
        if os.environ.get("BERTH_REQUIRE_DOCKER") == "1":
            pytest.fail(f"BERTH_REQUIRE_DOCKER=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def docker_runtime() -> Any:
    return docker_runtime_or_skip()


@pytest.fixture
def deployment(docker_runtime: Any, tmp_path: Path) -> Iterator[Any]:
    """A real ``berth serve`` process (``tests.deployment``); cleaned up whatever the test did."""
    from tests.deployment import Deployment  # it imports this module

    deployment = Deployment(tmp_path)
    try:
        yield deployment
    finally:
        deployment.cleanup()


@pytest.fixture
def base_config(tmp_path: Path) -> BerthConfig:
    return BerthConfig(
        instance_id=f"t{uuid.uuid4().hex[:10]}",
        image=SESSION_IMAGE,
        state_dir=tmp_path / "state",
        claude_dir_root=tmp_path,
        eviction_ttl=60,
        startup_timeout=60,
        token_retry_delay=0.05,
        reconnect_grace=0,
        container_stop_timeout=0,
        container_memory=None,
        stop_sessions_on_exit=True,
        warm_pool_refill_delay=0,
    )


class TreeFactory:
    def __init__(self, base: BerthConfig) -> None:
        self.base = base
        self.started: list[tuple[Berth, ContainerRuntime, BerthConfig]] = []

    def __call__(
        self,
        runtime: ContainerRuntime | None = None,
        clock: ManualClock | None = None,
        environ: dict[str, str] | None = None,
        executor: Any = None,
        **overrides: Any,
    ) -> Berth:
        config = replace(self.base, **overrides)
        runtime = runtime if runtime is not None else StubRuntime()
        if environ is None:
            environ = {"CLAUDE_CODE_OAUTH_TOKEN": TEST_OAUTH_TOKEN}
        berth = Berth.start(config, runtime=runtime, clock=clock, environ=environ, executor=executor)
        self.started.append((berth, runtime, config))
        return berth


def _berth_threads(baseline: set[threading.Thread]) -> Callable[[], list[str]]:
    def leftover() -> list[str]:
        return [t.name for t in threading.enumerate() if t not in baseline and t.is_alive()]

    return leftover


@pytest.fixture
def tree(base_config: BerthConfig) -> Iterator[TreeFactory]:
    """Starts trees on demand; at teardown shuts each down and checks for leaks."""
    baseline = set(threading.enumerate())
    factory = TreeFactory(base_config)
    yield factory
    for berth, runtime, config in factory.started:
        berth.shutdown()
        assert berth.leftover_timers == 0, f"{berth.leftover_timers} timers still armed after shutdown"
        left = runtime.list({LABEL_INSTANCE: config.instance_id})
        assert not left, f"containers left behind: {[c.name for c in left]}"
        secrets = config.secrets_root
        assert not secrets.exists() or not any(secrets.iterdir()), "secrets directories left behind"
    assert pykka.ActorRegistry.get_all() == [], "actors left running"
    leftover = _berth_threads(baseline)
    wait_until(lambda: not leftover(), timeout=10, what="threads to end")


@pytest.fixture(scope="module", autouse=True)
def no_actor_outlives_its_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stops whatever a module's tests left running, and fails that module for it.

    A leaked tree keeps non-daemon pykka threads alive, so without this one
    failing test would keep the whole pytest process from ever exiting.
    """
    before = set(pykka.ActorRegistry.get_all())
    yield
    leaked = [ref for ref in pykka.ActorRegistry.get_all() if ref not in before]
    for ref in leaked:
        ref.stop(block=False)
    for ref in leaked:
        ref.actor_stopped.wait(10)
    if leaked:
        names = sorted({ref.actor_class.__name__ for ref in leaked})
        pytest.fail(f"{request.module.__name__} left {len(leaked)} actors running ({', '.join(names)})")


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Ends the process even if a test left a non-daemon thread behind, and says which."""
    pykka.ActorRegistry.stop_all(block=True, timeout=10)
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in lingering:
        thread.join(timeout=5)
    alive = [t.name for t in lingering if t.is_alive()]
    if alive:
        print(f"\nthreads still running after the suite, exiting without them: {alive}", flush=True)
        os._exit(_exit_status[-1] if _exit_status and _exit_status[-1] else 1)
