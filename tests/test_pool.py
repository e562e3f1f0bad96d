"""The warm pool, fast: a stub runtime and in-process agent links.

tests/test_end_to_end.py claims real pooled containers through real sockets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.api import Berth
from actors.clock import ManualClock
from actors.messages import ListContainers, PoolAgentAttached
from tests.fake_link import FakeLink
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p


def pooled(runtime: StubRuntime) -> list[Any]:
    with runtime.lock:
        return [c for c in runtime.containers.values() if c.spec.env.get("BERTH_POOL_SLOT")]


def connect_pool_agents(berth: Berth, runtime: StubRuntime, want: int) -> dict[str, FakeLink]:
    """Play the pooled agents: each connects on its slot."""
    wait_until(
        lambda: len(berth.pool_directory) >= want and len(pooled(runtime)) >= want, what="pooled containers"
    )
    links: dict[str, FakeLink] = {}
    for slot in berth.pool_directory.ids():
        entry = berth.pool_directory.get(slot)
        assert entry is not None and entry.ref is not None
        links[slot] = FakeLink()
        entry.ref.tell(PoolAgentAttached(slot, links[slot]))
    wait_until(lambda: berth.pool_status()["ready"] >= want, what="pooled agents to be ready")
    return links


def test_a_session_claims_a_pooled_container_and_its_agent_gets_the_session_over_its_socket(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=2, agent_runner="sdk")
    links = connect_pool_agents(berth, runtime, 2)
    sid = berth.create_session(name="warm")
    wait_until(lambda: "started" in berth.get_session(sid).history[-1].content, what="the claimed container")
    assigned = [frame for link in links.values() for frame in link.frames(p.Assign)]
    assert len(assigned) == 1
    assignment = assigned[0]
    assert isinstance(assignment, p.Assign) and assignment.session_id == sid
    assert assignment.session_token == berth.lookup(sid).agent_token.reveal()
    assert assignment.oauth_token is not None
    assert "sk-ant" not in repr(assignment)


def test_the_pool_refills_in_the_background_and_never_reuses_a_claimed_container(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=1)
    first_links = connect_pool_agents(berth, runtime, 1)
    first_slot = next(iter(first_links))
    one = berth.create_session(name="one")
    wait_until(lambda: berth.pool_status()["claimed"] == 1, what="the claim")
    wait_until(
        lambda: berth.pool_directory.ids() and first_slot not in berth.pool_directory.ids(), what="refill"
    )
    connect_pool_agents(berth, runtime, 1)
    two = berth.create_session(name="two")
    wait_until(lambda: berth.pool_status()["claimed"] == 2, what="the second claim")
    wait_until(
        lambda: all("started" in berth.get_session(s).history[-1].content for s in (one, two)),
        what="both started",
    )
    wait_until(lambda: len(runtime.containers) == 3, what="two claimed containers and one waiting")
    with runtime.lock:
        containers = list(runtime.containers.values())
    assert len({c.id for c in containers}) == 3
    assert len(pooled(runtime)) == 3  # all pooled-born; the two claimed now belong to sessions
    owned = berth._children()["container"].ask(ListContainers())
    assert owned[one] != owned[two]


def test_a_pooled_container_that_dies_is_replaced(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=1)
    connect_pool_agents(berth, runtime, 1)
    dead = pooled(runtime)[0]
    runtime.exit(dead.id, 1)
    wait_until(lambda: berth.pool_status()["replaced"] == 1, what="the replacement")
    wait_until(lambda: any(c.id != dead.id for c in pooled(runtime)), what="a new pooled container")
    wait_until(lambda: dead.id in runtime.removed, what="the dead one removed")


def test_the_pool_respects_the_session_limit(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=2, max_sessions=2)
    connect_pool_agents(berth, runtime, 2)
    berth.create_session(name="a")
    berth.create_session(name="b")
    wait_until(lambda: berth.pool_status()["slots"] == 0, what="the pool to shrink to the limit")
    wait_until(lambda: len(runtime.containers) == 2, what="only the sessions' containers")


def test_an_empty_pool_falls_back_to_a_cold_start(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=1)
    sid = berth.create_session(name="cold")  # no pooled agent has connected yet
    container = wait_until(lambda: runtime.by_session(sid), what="a cold container")
    assert container.spec.env["BERTH_SESSION_ID"] == sid
    assert berth.pool_status()["empty_claims"] == 1


def test_shutting_down_removes_the_pooled_containers(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, warm_pool_size=3)
    connect_pool_agents(berth, runtime, 3)
    berth.shutdown()
    assert runtime.containers == {}


def test_pooled_containers_that_keep_dying_are_replaced_with_backoff_not_in_a_loop(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, warm_pool_size=1, pool_retry_delay=5)
    wait_until(lambda: len(pooled(runtime)) == 1, what="a pooled container")
    first = pooled(runtime)[0]
    runtime.exit(first.id, 1)
    # the first loss is replaced at once
    wait_until(lambda: pooled(runtime) and pooled(runtime)[0].id != first.id, what="a replacement")
    runtime.exit(pooled(runtime)[0].id, 1)
    wait_until(lambda: berth.pool_status()["replaced"] == 2, what="the second loss")
    # the second loss in a row waits for the backoff: nothing new starts until the clock moves
    wait_until(lambda: berth.timers.pending() >= 1, what="the refill timer")
    assert not [c for c in pooled(runtime) if c.running]
    clock.advance(5)
    wait_until(lambda: [c for c in pooled(runtime) if c.running], what="the delayed replacement")


def test_a_claimed_container_is_adopted_by_a_restarted_container_service_not_swept(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, warm_pool_size=1, child_restart_delay=1)
    root = tree.started[-1][2].secrets_root
    connect_pool_agents(berth, runtime, 1)
    sid = berth.create_session(name="warm")
    wait_until(lambda: berth.pool_status()["claimed"] == 1, what="the claim")
    claimed = wait_until(
        lambda: next((c for c in pooled(runtime) if _claim_of(root, c) == sid), None), what="the claim file"
    )
    slot_dir = root / claimed.spec.labels["berth.session"]
    token_file = slot_dir / "session-token"
    assert token_file.read_text() == berth.lookup(sid).agent_token.reveal()
    assert token_file.stat().st_mode & 0o777 == 0o600
    container_actor = berth._children()["container"]
    container_actor.tell(object())  # the bug that kills it
    wait_until(lambda: not container_actor.is_alive(), what="the container actor to die")
    berth.settle()
    clock.advance(1)
    wait_until(lambda: berth._children()["container"] is not None, what="the replacement")
    berth.settle()
    assert claimed.id in runtime.containers and claimed.id not in runtime.removed
    assert slot_dir.is_dir()
    berth.delete_session(sid)
    wait_until(lambda: claimed.id in runtime.removed, what="the claimed container removed with its session")


def _claim_of(root: Path, container: Any) -> str | None:
    path = root / container.spec.labels["berth.session"] / "session-id"
    return path.read_text() if path.exists() else None


def test_a_claimed_slot_is_replaced_only_after_the_refill_delay(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, warm_pool_size=1, warm_pool_refill_delay=2)
    connect_pool_agents(berth, runtime, 1)
    berth.create_session(name="warm")
    wait_until(lambda: berth.pool_status()["claimed"] == 1, what="the claim")
    wait_until(lambda: berth.timers.pending() >= 1, what="the refill hold")
    # the claimed session's first prompt has the CPU to itself: no replacement yet
    assert berth.pool_status()["slots"] == 0 and len(pooled(runtime)) == 1
    clock.advance(1.9)
    berth.settle()
    assert berth.pool_status()["slots"] == 0
    clock.advance(0.1)
    wait_until(lambda: berth.pool_status()["slots"] == 1, what="the replacement slot")
    wait_until(lambda: len(pooled(runtime)) == 2, what="the replacement container")
