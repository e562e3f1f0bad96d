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
