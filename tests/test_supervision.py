"""The supervision tree: children die and come back, and nothing outlives shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.api import Berth, BerthError
from actors.clock import ManualClock
from tests.agent_double import attach, say
from tests.inline_executor import inline_executor
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p

REPO = Path(__file__).resolve().parent.parent


def crash(ref: Any) -> None:
    """Tell an actor something it does not understand: the bug that kills it."""
    ref.tell(object())


def children(berth: Berth) -> dict[str, Any]:
    return berth._children()


def ready(berth: Berth, runtime: StubRuntime, name: str = "s") -> tuple[str, Any]:
    sid = berth.create_session(name=name)
    wait_until(lambda: runtime.by_session(sid), what="the container")
    link = attach(berth, sid)
    say(berth, sid, link, p.Ready())
    wait_until(lambda: berth.get_session(sid).info.status == "idle", what="idle")
    return sid, link


@pytest.mark.parametrize("kind", ["token", "container"])
def test_a_dead_service_is_restarted_creates_fail_with_503_meanwhile_and_sessions_survive(tree, kind):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, executor=inline_executor, child_restart_delay=2)
    sid, link = ready(berth, runtime)
    old = children(berth)[kind]
    crash(old)
    wait_until(lambda: not old.is_alive(), what=f"the {kind} actor to die")
    berth.settle()
    with pytest.raises(BerthError) as refused:
        berth.create_session(name="during the outage")
    assert refused.value.code == 503 and f"{kind} service is down" in str(refused.value)
    berth.send_message(sid, "still there?")
    wait_until(lambda: link.frames(p.UserMessage), what="the live session to relay")
    clock.advance(1.9)
    assert children(berth)[kind] is None
    clock.advance(0.1)
    replacement = children(berth)[kind]
    assert replacement is not None and replacement.is_alive() and replacement != old
    second = berth.create_session(name="after the restart")
    wait_until(lambda: runtime.by_session(second), what="a new session's container")
    assert berth.get_session(sid).info.status == "idle"


def test_a_restarted_container_service_still_removes_the_sessions_it_adopted(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, executor=inline_executor, child_restart_delay=1)
    sid, _ = ready(berth, runtime)
    container = runtime.by_session(sid)
    crash(children(berth)["container"])
    berth.settle()
    clock.advance(1)
    berth.terminate_session(sid)
    berth.settle()
    assert container.id in runtime.removed


def test_a_restarted_token_service_serves_the_sessions_waiting_for_a_token(tree, tmp_path):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(
        runtime=runtime, clock=clock, executor=inline_executor, agent_runner="sdk", child_restart_delay=1
    )
    token_actor = children(berth)["token"]
    crash(token_actor)
    wait_until(lambda: not token_actor.is_alive(), what="the token actor to die")
    berth.settle()
    clock.advance(1)
    sid = berth.create_session(name="after")
    berth.settle()
    assert runtime.by_session(sid) is not None


def test_repeated_failures_back_off_up_to_the_limit(tree):
    clock = ManualClock()
    berth = tree(clock=clock, executor=inline_executor, child_restart_delay=1, child_restart_max_delay=3)
    for delay in (1, 2, 3, 3):
        crash(children(berth)["token"])
        berth.settle()
        clock.advance(delay - 0.01)
        assert children(berth)["token"] is None
        clock.advance(0.01)
        assert children(berth)["token"] is not None


def test_shutdown_leaves_no_thread_even_after_a_service_died(tree):
    baseline = set(threading.enumerate())
    runtime = StubRuntime()
    berth = tree(runtime=runtime, child_restart_delay=60)
    ready(berth, runtime)
    crash(children(berth)["container"])
    crash(children(berth)["token"])
    berth.settle()
    berth.shutdown()
    assert pykka.ActorRegistry.get_all() == []
    wait_until(
        lambda: not [t for t in threading.enumerate() if t not in baseline and t.is_alive()],
        what="every Berth thread to end",
    )


def test_get_session_and_attach_sink_on_a_stopped_session_answer_instead_of_recursing(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, _ = ready(berth, runtime)
    ref = berth.lookup(sid).ref
    ref.stop()  # the actor is gone but the registry has not heard yet
    view = berth.get_session(sid)
    assert view.info.id == sid
    seen: list[Any] = []
    berth.attach_sink(sid, seen.append)
    assert isinstance(seen[0], p.Snapshot) and seen[0].session_id == sid


def test_once_delete_returns_neither_list_nor_get_shows_the_session(tree):
    berth = tree()
    for n in range(30):
        sid = berth.create_session(name=f"gone {n}")
        berth.delete_session(sid)
        assert sid not in [info.id for info in berth.list_sessions()]
        with pytest.raises(BerthError) as missing:
            berth.get_session(sid)
        assert missing.value.code == 404


class _EngineAwayAtFirst(StubRuntime):
    """The first exit watch fails, as with an engine that is not up yet."""

    def __init__(self) -> None:
        super().__init__()
        self.watch_failures = 1

    def watch_exits(
        self, labels: Any, callback: Any, resumed: Any = None, retry: float = 0.5, retry_max: float = 10.0
    ) -> Any:
        if self.watch_failures:
            self.watch_failures -= 1
            raise ConnectionError("the engine is not answering")
        return super().watch_exits(labels, callback, resumed, retry, retry_max)


def test_a_service_whose_start_fails_is_reported_and_restarted(tree):
    runtime = _EngineAwayAtFirst()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, executor=inline_executor, child_restart_delay=1)
    berth.settle()
    with pytest.raises(BerthError) as refused:
        berth.create_session(name="too early")
    assert refused.value.code == 503 and "container service is down" in str(refused.value)
    assert "the engine is not answering" in str(refused.value)
    clock.advance(1)
    sid = berth.create_session(name="in time")
    berth.settle()
    assert runtime.by_session(sid) is not None


HOST_THAT_FORGETS_SHUTDOWN = """
import sys
from pathlib import Path
from actors.api import Berth
from actors.config import BerthConfig
from tests.stub_runtime import StubRuntime

root = Path(sys.argv[1])
config = BerthConfig(instance_id="forgetful", state_dir=root / "state", claude_dir_root=root)
berth = Berth.start(config, runtime=StubRuntime(), environ={"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-x"})
berth.create_session(name="left running")
print("started", flush=True)
"""


def test_a_host_that_returns_from_main_without_shutdown_still_exits(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", HOST_THAT_FORGETS_SHUTDOWN, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "started", done.stderr
    assert done.returncode == 0, done.stderr
