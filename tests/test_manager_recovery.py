"""Manager sessions across restarts.

A kill -9 of a real ``berth serve`` with real containers: the manager's pause
and resume-at, its queued events and its children come back from the store;
its scoped API token is issued anew and written over its secret file, so its
tools work again and the old token is dead. In-process restarts on a stub
engine: what recovered sessions report to each other while the tree is still
being put together, and a delete that comes before the container is adopted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q
from actors.runtime import ContainerRecord
from tests.agent_double import attach, say
from tests.deployment import Deployment
from tests.rest_client import rest_call
from tests.stub_runtime import StubRuntime
from tests.test_manager_sessions import info, prompts, ready_child, ready_manager
from tests.waiting import wait_until
from transport import protocol as p


@pytest.fixture
def deployment(docker_runtime: Any, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, manager_batch_delay="0.2", manager_continue_delay="3600")
    try:
        yield deployment
    finally:
        deployment.cleanup()


def manager_info(d: Deployment, sid: str) -> dict[str, Any]:
    return dict(d.session(sid)["session"]["manager"])


def history(d: Deployment, sid: str) -> list[dict[str, Any]]:
    return list(d.session(sid)["messages"])


def token_in_container(d: Deployment, sid: str) -> str:
    container = d.container_of(sid)
    assert container is not None
    read = d.docker.containers.get(container["Id"]).exec_run(["cat", "/run/berth/secrets/manager-token"])
    assert read.exit_code == 0, read.output
    return str(read.output.decode().strip())


def prompt_and_wait(d: Deployment, sid: str, content: str) -> list[dict[str, Any]]:
    """Send a prompt to the manager; the tool results of its turn."""
    before = len(history(d, sid))
    assert d.call("POST", f"/api/sessions/{sid}/message", {"content": content})[0] == 202
    wait_until(
        lambda: any(m["kind"] == "assistant" for m in history(d, sid)[before:]),
        timeout=60,
        what="the manager's turn",
    )
    return [m for m in history(d, sid)[before:] if m["kind"] == "tool_result"]


def paused_with_a_child(d: Deployment, resume_at: float) -> tuple[str, str]:
    """A configured manager, paused until ``resume_at``, whose child's ready event waits for it."""
    status, body = d.call("POST", "/api/sessions", {"name": "boss", "manager": True})
    assert status == 201, body
    boss = str(body["session"]["id"])
    question = d.wait_status(boss, "awaiting_answer")["pendingQuestion"]
    answers = {FOCUS_Q: "Bugs", EXPLORE_Q: "Explore"}
    assert (
        d.call("POST", f"/api/sessions/{boss}/answer", {"questionId": question["id"], "answers": answers})[0]
        == 202
    )
    wait_until(lambda: any(m["kind"] == "assistant" for m in history(d, boss)), timeout=60, what="first turn")
    assert d.call("POST", f"/api/sessions/{boss}/manager/pause", {"resumeAt": resume_at})[0] == 202
    (created,) = prompt_and_wait(d, boss, '/create_child {"name": "kid"}')
    assert not created.get("isError"), created
    wait_until(
        lambda: manager_info(d, boss)["pendingEvents"] == 1, timeout=60, what="the child's ready event"
    )
    return boss, manager_info(d, boss)["children"][0]["id"]


def events_delivered(d: Deployment, boss: str) -> list[str]:
    return [
        m["content"] for m in history(d, boss) if m["kind"] == "user" and "[CHILD SESSION" in m["content"]
    ]


def test_a_killed_server_brings_a_paused_manager_back_with_its_events_children_and_a_working_token(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
    resume_at = time.time() + 3600
    boss, kid = paused_with_a_child(d, resume_at)
    old_token = token_in_container(d, boss)
    d.make_durable(boss)
    d.kill9()

    d.start()
    d.wait_status(boss, "idle")
    info = manager_info(d, boss)
    assert info["paused"] and info["resumeAt"] == pytest.approx(resume_at, abs=0.01)
    assert info["pendingEvents"] == 1 and [c["id"] for c in info["children"]] == [kid]
    script = '/create_child {"name": "kid2"}\n/list_children {}'
    created, listed = prompt_and_wait(d, boss, script)  # the manager's tools work again
    assert not created.get("isError") and not listed.get("isError"), (created, listed)
    assert kid in listed["content"] and "kid2" in listed["content"], listed
    new_token = token_in_container(d, boss)
    assert new_token != old_token
    assert rest_call(d.url, old_token, "GET", f"/api/sessions/{kid}")[0] == 401
    assert rest_call(d.url, new_token, "GET", f"/api/sessions/{kid}")[0] == 200

    assert d.call("POST", f"/api/sessions/{boss}/manager/resume")[0] == 202
    (delivered,) = wait_until(
        lambda: events_delivered(d, boss), timeout=30, what="the event kept across the restart"
    )
    assert "[CHILD SESSION READY]" in delivered
    assert d.call("DELETE", f"/api/sessions/{boss}")[0] == 204
    wait_until(
        lambda: (
            [s for s in d.call("GET", "/api/sessions")[1]["sessions"] if s.get("managedBy") == boss] == []
        ),
        timeout=30,
        what="its children to go with it",
    )
    d.assert_nothing_left()


def test_a_resume_at_set_before_a_kill_9_resumes_the_manager_on_time_after_the_restart(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
    resume_at = time.time() + 8
    boss, _ = paused_with_a_child(d, resume_at)
    d.make_durable(boss)
    d.kill9()
    d.start()
    (delivered,) = wait_until(
        lambda: events_delivered(d, boss), timeout=60, what="the resume and the kept event"
    )
    assert time.time() >= resume_at - 0.1, "resumed before its resume-at"
    assert "[CHILD SESSION READY]" in delivered
    assert not manager_info(d, boss)["paused"]
    assert d.call("DELETE", f"/api/sessions/{boss}")[0] == 204
    d.assert_nothing_left()


# ---------------------------------------------------------------- in-process restarts (stub engine)


def test_a_child_whose_container_went_while_berth_was_down_leaves_its_managers_list(tree):
    runtime = StubRuntime()
    durable = {"stop_sessions_on_exit": False, "reconnect_grace": 30}
    berth = tree(runtime=runtime, clock=ManualClock(), **durable)
    boss, _ = ready_manager(berth, runtime)
    kid, kid_link = ready_child(berth, runtime, boss, "alpha")
    berth.send_message(kid, "work")
    say(berth, kid, kid_link, p.StatusUpdate(status="running"))  # at work: it holds the nudge back
    wait_until(lambda: [c.status for c in info(berth, boss).manager.children] == ["running"], what="running")
    container = runtime.by_session(kid)
    assert container is not None
    berth.shutdown()
    runtime.remove(container.id, 0)

    # Half a second later: the ready event's batch delay has not passed, so both events wait.
    again = tree(runtime=runtime, clock=ManualClock(start=5.0, wall_start=1_800_000_000.5), **durable)
    wait_until(lambda: again.get_session(kid).info.status == "error", what="the child to fail")
    wait_until(lambda: info(again, boss).manager.children == [], what="the child to leave the list")
    assert info(again, boss).manager.pending_events == 2  # the ready event and the failure
    again.delete_session(boss)
    again.delete_session(kid)
    wait_until(lambda: not runtime.list({}), what="every container to be removed")
    secrets = tree.started[-1][2].secrets_root
    wait_until(lambda: not any(secrets.iterdir()), what="every secrets directory to be removed")


def test_after_a_restart_children_whose_agents_are_back_no_longer_hold_the_managers_nudge(tree):
    runtime = StubRuntime()
    durable = {"stop_sessions_on_exit": False, "reconnect_grace": 30}
    berth = tree(runtime=runtime, clock=ManualClock(), **durable)
    boss, _ = ready_manager(berth, runtime)
    kid, _ = ready_child(berth, runtime, boss, "alpha")
    wait_until(lambda: [c.status for c in info(berth, boss).manager.children] == ["idle"], what="idle")
    berth.shutdown()

    clock = ManualClock(start=5.0, wall_start=1_800_000_100.0)
    again = tree(runtime=runtime, clock=clock, **durable)
    wait_until(
        lambda: [c.status for c in info(again, boss).manager.children] == ["reconnecting"],
        what="the child to be reconnecting in its manager's list",
    )
    boss_link = attach(again, boss)
    attach(again, kid)  # the child's agent is back: idle, waiting for its manager
    wait_until(lambda: again.get_session(kid).info.status == "idle", what="the child's agent")
    wait_until(lambda: [c.status for c in info(again, boss).manager.children] == ["idle"], what="idle again")
    wait_until(lambda: prompts(boss_link), what="the event kept from before the restart")
    assert "[CHILD SESSION READY]" in prompts(boss_link)[0]
    say(again, boss, boss_link, p.StatusUpdate(status="running"), p.Result(result="ok"))
    again.settle()
    clock.advance(3)
    wait_until(lambda: len(prompts(boss_link)) == 2, what="the nudge")
    assert prompts(boss_link)[1].startswith("Continue your manager loop")
    again.delete_session(boss)
    wait_until(lambda: not runtime.list({}), what="every container to be removed")
    secrets = tree.started[-1][2].secrets_root
    wait_until(lambda: not any(secrets.iterdir()), what="every secrets directory to be removed")


class HeldAdoption(StubRuntime):
    """The listing the container service adopts from waits for ``hold`` (recovery's does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: threading.Event | None = None
        self.listings = 0

    def list(self, labels: Mapping[str, str]) -> list[ContainerRecord]:
        self.listings += 1
        if self.hold is not None and self.listings == 2:
            self.hold.wait(timeout=10)
        return super().list(labels)


def test_a_session_deleted_right_after_a_restart_before_its_container_is_adopted_leaves_no_container(tree):
    runtime = HeldAdoption()
    durable = {"stop_sessions_on_exit": False, "reconnect_grace": 30}
    berth = tree(runtime=runtime, clock=ManualClock(), **durable)
    sid = berth.create_session(name="short-lived")
    wait_until(lambda: runtime.by_session(sid), what="its container")
    berth.shutdown()
    runtime.hold, runtime.listings = threading.Event(), 0

    again = tree(runtime=runtime, clock=ManualClock(), **durable)
    again.delete_session(sid)
    again.settle()  # the container service has handled the removal; its adoption still waits
    runtime.hold.set()
    wait_until(lambda: runtime.by_session(sid) is None, what="the container to be removed")
    secrets = tree.started[-1][2].secrets_root
    wait_until(lambda: not any(secrets.iterdir()), what="its secrets directory to be removed")
