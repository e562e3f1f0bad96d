"""Manager sessions for real: the server, real containers running the real agent
(the built-in runner's scripted manager), REST and the event bus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from actors.config import BerthConfig
from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q
from actors.secret import Secret
from tests.rest_client import rest_call
from tests.test_end_to_end import API_TOKEN, E2E
from tests.waiting import wait_until
from transport import protocol as p
from transport.serve import start_server
from transport.settings import ServerSettings


def serve(base_config: BerthConfig, docker_runtime: Any, **overrides: Any) -> Iterator[E2E]:
    config = replace(base_config, reconnect_grace=20, eviction_ttl=60, startup_timeout=90, **overrides)
    running = start_server(
        config, ServerSettings(port=0), api_token=Secret(API_TOKEN), runtime=docker_runtime
    )
    try:
        yield E2E(running, docker_runtime.client)
    finally:
        running.stop()
    left = docker_runtime.client.api.containers(
        all=True, filters={"label": f"berth.instance={config.instance_id}"}
    )
    assert not left, "containers left behind"


@pytest.fixture
def quiet(base_config: BerthConfig, docker_runtime: Any) -> Iterator[E2E]:
    """Events batched for 0.2 s; no auto-continue within the test's time."""
    yield from serve(base_config, docker_runtime, manager_batch_delay=0.2, manager_continue_delay=3600)


@pytest.fixture
def eager(base_config: BerthConfig, docker_runtime: Any) -> Iterator[E2E]:
    """Auto-continue after 2 s."""
    yield from serve(base_config, docker_runtime, manager_batch_delay=0.2, manager_continue_delay=2)


def configured_manager(e2e: E2E) -> str:
    """A manager, onboarded, its first turn over."""
    status, body = e2e.call("POST", "/api/sessions", {"name": "boss", "manager": True})
    assert status == 201, body
    sid = str(body["session"]["id"])
    wait_until(lambda: e2e.status(sid) in ("awaiting_answer", "error"), timeout=90, what="onboarding")
    question = e2e.call("GET", f"/api/sessions/{sid}")[1]["pendingQuestion"]
    answers = {FOCUS_Q: "Bugs", EXPLORE_Q: "Explore"}
    assert (
        e2e.call("POST", f"/api/sessions/{sid}/answer", {"questionId": question["id"], "answers": answers})[0]
        == 202
    )
    wait_until(lambda: results(e2e, sid) >= 1, timeout=30, what="the first prompt's turn")
    return sid


def results(e2e: E2E, sid: str) -> int:
    return sum(1 for m in e2e.history(sid) if m["kind"] == "assistant")


def events(e2e: E2E, sid: str) -> str:
    return "\n".join(m["content"] for m in e2e.history(sid) if m["kind"] == "user")


def test_a_scripted_manager_creates_two_children_and_hears_that_one_completed_and_one_failed(quiet):
    e2e = quiet
    boss = configured_manager(e2e)
    script = (
        '/create_child {"name": "good", "prompt": "hello child"}\n'
        '/create_child {"name": "bad", "prompt": "/crash"}'
    )
    assert e2e.call("POST", f"/api/sessions/{boss}/message", {"content": script})[0] == 202
    wait_until(
        lambda: (
            "[CHILD SESSION COMPLETED]" in events(e2e, boss) and "[CHILD SESSION ERROR]" in events(e2e, boss)
        ),
        timeout=120,
        what="both children's events",
    )
    text = events(e2e, boss)
    assert "You said: hello child" in text
    assert "/crash asked the runner to die" in text
    children = {
        s["name"]: s for s in e2e.call("GET", "/api/sessions")[1]["sessions"] if s.get("managedBy") == boss
    }
    assert children["good"]["status"] == "idle" and children["bad"]["status"] == "error"
    listed = e2e.call("GET", f"/api/sessions/{boss}")[1]["session"]["manager"]["children"]
    assert [(c["name"], c["status"]) for c in listed] == [("good", "idle")]  # the failed child left the list
    calls = [m for m in e2e.history(boss) if m["kind"] == "tool_call"]
    assert [c["toolName"] for c in calls] == ["mcp__berth__create_child"] * 2
    good = children["good"]["id"]
    assert e2e.container(good) is not None
    assert e2e.call("DELETE", f"/api/sessions/{boss}")[0] == 204  # deleting a manager ends its children
    wait_until(lambda: e2e.status(good) == "http 404", timeout=30, what="the child to be deleted")
    wait_until(lambda: e2e.container(good) is None, timeout=60, what="the child's container to go")


def test_deleting_a_manager_during_a_pending_auto_continue_sends_nothing_and_leaves_no_container(eager):
    e2e = eager
    boss = configured_manager(e2e)
    berth = e2e.running.berth
    wait_until(lambda: "manager-continue" in berth.get_session(boss).timers, timeout=10, what="the nudge")
    armed_at = time.monotonic()
    seen: list[Any] = []
    with berth.subscribe() as bus:
        assert e2e.call("DELETE", f"/api/sessions/{boss}")[0] == 204
        wait_until(lambda: e2e.container(boss) is None, timeout=60, what="the manager's container to go")
        # The nudge was due 2 s after it was armed: wait past that, then look at what was published.
        remaining = armed_at + 3.0 - time.monotonic()
        deadline = time.monotonic() + max(remaining, 0.0)
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(bus.get(left))
            except TimeoutError:
                break
    published = [e.message for e in seen if isinstance(e, p.MessageAdded) and e.session_id == boss]
    assert [(m.kind, m.content) for m in published] in ([], [("system", "deleted")])  # no nudge
    assert e2e.status(boss) == "http 404"


def test_the_manager_token_reaches_the_container_only_as_a_file_and_gets_403_on_a_foreign_session(quiet):
    e2e = quiet
    boss = configured_manager(e2e)
    foreign = e2e.create(name="not the manager's")
    container = e2e.container(boss)
    read = container.exec_run(["cat", "/run/berth/secrets/manager-token"])
    assert read.exit_code == 0, read.output
    token = read.output.decode().strip()
    assert token and token not in str(container.attrs["Config"]["Env"])
    base = e2e.running.server.http_url
    status, body = rest_call(base, token, "GET", f"/api/sessions/{foreign}")
    assert status == 403 and boss in body["error"]
    status, body = rest_call(base, token, "POST", f"/api/sessions/{foreign}/message", {"content": "hi"})
    assert status == 403
    assert rest_call(base, token, "GET", f"/api/sessions/{boss}")[0] == 200
