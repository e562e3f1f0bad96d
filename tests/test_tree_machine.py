"""A stateful property test of the whole threaded tree (stub runtime, pool, manual clock).

Several sessions live and die at random — agents attach, drop and speak,
users send commands, containers exit, services and sessions crash, time
passes — and after every step, once the tree has settled, nothing leaked:
every actor alive belongs to a listed session or to the tree, every
container belongs to a listed session or a pool slot, every ended session
has its eviction armed, and the threads are the actors' and the timer's.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pykka
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.api import Berth, BerthError
from actors.clock import ManualClock
from actors.config import BerthConfig
from actors.messages import AgentAttached, AgentDetached, FromAgent
from actors.runtime import LABEL_INSTANCE
from tests.fake_link import FakeLink
from tests.inline_executor import inline_executor
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p

APPROVAL = p.PendingApproval(id="a1", tool_name="Bash", tool_input={}, timestamp=1.0)
FRAMES = [
    p.Ready(),
    p.StatusUpdate(status="running"),
    p.ApprovalRequest(approval=APPROVAL),
    p.Stream(message_id="m", tokens=["x"]),
    p.Result(result="done"),
    p.AgentError(message="boom", fatal=True),
]


class TreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.baseline = set(threading.enumerate())
        self.root = Path("/tmp") / f"berth-tree-machine-{uuid.uuid4().hex[:8]}"
        self.config = BerthConfig(
            instance_id=f"m{uuid.uuid4().hex[:10]}",
            state_dir=self.root,
            eviction_ttl=20,
            startup_timeout=15,
            reconnect_grace=5,
            token_retry_delay=1,
            child_restart_delay=1,
            warm_pool_size=1,
            max_sessions=4,
            stop_sessions_on_exit=True,  # its leak checks expect a stop to remove everything
            session_store="none",  # the store's writer thread is not part of this machine
        )
        self.runtime = StubRuntime()
        self.clock = ManualClock()
        self.berth = Berth.start(
            self.config, runtime=self.runtime, clock=self.clock, environ={}, executor=inline_executor
        )
        self.sids: list[str] = []
        self.links: dict[str, FakeLink] = {}

    def teardown(self) -> None:
        self.berth.shutdown()
        assert self.berth.leftover_timers == 0
        assert not self.runtime.list({LABEL_INSTANCE: self.config.instance_id}), "containers left behind"
        assert pykka.ActorRegistry.get_all() == []
        wait_until(lambda: not self._extra_threads(), timeout=10, what="the tree's threads to end")

    # ------------------------------------------------------------ helpers

    def _extra_threads(self) -> list[str]:
        return [t.name for t in threading.enumerate() if t not in self.baseline and t.is_alive()]

    def pick(self, i: int) -> str:
        return self.sids[i % len(self.sids)]

    def ref(self, sid: str) -> Any:
        entry = self.berth._directory.get(sid)
        return entry.ref if entry is not None else None

    def tell(self, sid: str, message: Any) -> None:
        ref = self.ref(sid)
        if ref is not None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass

    def settle(self) -> None:
        self.berth.settle()

    # ------------------------------------------------------------ rules

    @rule()
    def create(self) -> None:
        try:
            self.sids.append(self.berth.create_session(name="m"))
        except BerthError as exc:
            assert exc.code in (429, 503), exc
        self.settle()

    @precondition(lambda self: self.sids)
    @rule(i=st.integers(0, 5))
    def agent_attaches(self, i: int) -> None:
        sid = self.pick(i)
        link = FakeLink()
        self.links[sid] = link
        self.tell(sid, AgentAttached(link))
        self.settle()

    @precondition(lambda self: self.links)
    @rule(i=st.integers(0, 5), frame=st.sampled_from(FRAMES))
    def agent_says(self, i: int, frame: p.AgentToServer) -> None:
        sid = self.pick(i)
        if sid in self.links:
            self.tell(sid, FromAgent(self.links[sid].link_id, frame))
        self.settle()

    @precondition(lambda self: self.links)
    @rule(i=st.integers(0, 5))
    def agent_drops(self, i: int) -> None:
        sid = self.pick(i)
        link = self.links.pop(sid, None)
        if link is not None:
            self.tell(sid, AgentDetached(link.link_id, "network"))
        self.settle()

    @precondition(lambda self: self.sids)
    @rule(
        i=st.integers(0, 5), what=st.sampled_from(["message", "approve", "interrupt", "terminate", "delete"])
    )
    def user_does(self, i: int, what: str) -> None:
        sid = self.pick(i)
        try:
            if what == "message":
                self.berth.send_message(sid, "hello")
            elif what == "approve":
                self.berth.answer_approval(sid, "a1", True)
            elif what == "interrupt":
                self.berth.interrupt(sid)
            elif what == "terminate":
                self.berth.terminate_session(sid)
            else:
                self.berth.delete_session(sid)
        except BerthError as exc:
            assert exc.code in (400, 404, 409, 503), exc
        self.settle()

    @precondition(lambda self: self.sids)
    @rule(i=st.integers(0, 5), code=st.sampled_from([0, 137]))
    def container_exits(self, i: int, code: int) -> None:
        container = self.runtime.by_session(self.pick(i))
        if container is not None and container.running:
            self.runtime.exit(container.id, code)
        self.settle()

    @precondition(lambda self: self.sids)
    @rule(i=st.integers(0, 5))
    def a_session_crashes(self, i: int) -> None:
        self.tell(self.pick(i), object())
        self.settle()

    @rule(kind=st.sampled_from(["token", "container", "pool"]))
    def a_service_crashes(self, kind: str) -> None:
        ref = self.berth._children()[kind]
        if ref is not None:
            ref.tell(object())
        self.settle()

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0, 15.0, 20.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ------------------------------------------------------------ invariants

    @invariant()
    def nothing_leaked(self) -> None:
        listed = {info.id: info for info in self.berth.list_sessions()}
        live_refs = {sid: self.ref(sid) for sid in listed if self.ref(sid) is not None}
        sessions_alive = [r for r in pykka.ActorRegistry.get_by_class_name("SessionActor")]
        assert {r.actor_urn for r in sessions_alive} <= {r.actor_urn for r in live_refs.values()}, (
            "a session actor is alive that the registry does not list"
        )
        pool_slots = set(self.berth.pool_directory.ids())
        # While the container service is down, removals wait for it (checked once it is back).
        service_up = self.berth._children()["container"] is not None
        for record in self.runtime.list({LABEL_INSTANCE: self.config.instance_id}) if service_up else []:
            owner = record.labels.get("berth.session", "")
            assert owner in listed or owner in pool_slots or owner.startswith("pool"), (
                f"container of {owner} outlived its session"
            )
        for sid, info in listed.items():
            if info.status.is_final and self.ref(sid) is not None:
                assert "eviction" in self.berth.get_session(sid).timers, f"{sid} ended without eviction armed"
        wait_until(
            lambda: len(self._extra_threads()) <= len(pykka.ActorRegistry.get_all()) + 1,
            timeout=5,
            what="no thread beyond one per actor and the timer thread",
        )


TreeMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_threaded_tree_leaks_nothing_through_random_lives = TreeMachine.TestCase
