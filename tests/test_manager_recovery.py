"""A manager session across a kill -9 of a real ``berth serve``, with real containers.

Its pause and resume-at, its queued events and its children come back from
the store; its scoped API token is issued anew and written over its secret
file, so its tools work again and the old token is dead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q
from tests.deployment import Deployment
from tests.rest_client import rest_call
from tests.waiting import wait_until


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


def test_a_killed_server_brings_a_paused_manager_back_with_its_events_children_and_a_working_token(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
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
    resume_at = time.time() + 3600
    assert d.call("POST", f"/api/sessions/{boss}/manager/pause", {"resumeAt": resume_at})[0] == 202
    (created,) = prompt_and_wait(d, boss, '/create_child {"name": "kid"}')
    assert not created.get("isError"), created
    wait_until(
        lambda: manager_info(d, boss)["pendingEvents"] == 1, timeout=60, what="the child's ready event"
    )
    kid = manager_info(d, boss)["children"][0]["id"]
    old_token = token_in_container(d, boss)
    d.make_durable(boss)
    d.kill9()

    d.start()
    d.wait_status(boss, "idle")
    info = manager_info(d, boss)
    assert info["paused"] and info["resumeAt"] == pytest.approx(resume_at, abs=0.01)
    assert info["pendingEvents"] == 1 and [c["id"] for c in info["children"]] == [kid]
    (listed,) = prompt_and_wait(d, boss, "/list_children {}")  # the manager's tools work again
    assert not listed.get("isError") and kid in listed["content"], listed
    new_token = token_in_container(d, boss)
    assert new_token != old_token
    assert rest_call(d.url, old_token, "GET", f"/api/sessions/{kid}")[0] == 401
    assert rest_call(d.url, new_token, "GET", f"/api/sessions/{kid}")[0] == 200

    assert d.call("POST", f"/api/sessions/{boss}/manager/resume")[0] == 202
    wait_until(
        lambda: any("[CHILD SESSION READY]" in m["content"] for m in history(d, boss) if m["kind"] == "user"),
        timeout=30,
        what="the event kept across the restart",
    )
    assert d.call("DELETE", f"/api/sessions/{boss}")[0] == 204
    wait_until(lambda: d.call("GET", f"/api/sessions/{kid}")[0] == 404, timeout=30, what="the child to go")
    d.assert_nothing_left()
