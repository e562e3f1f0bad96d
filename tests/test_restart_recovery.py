"""Restarts of a real ``berth serve`` process with real session containers.

Graceful restarts, kill -9 at random points of real sessions (idle, streaming,
awaiting approval), an agent that is down while the server restarts, and a
container removed while the server was down.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import docker

from actors.runtime import LABEL_SESSION
from tests.deployment import Deployment
from tests.waiting import wait_until
from tests.ws_client import WsPeer


def _subscribed(d: Deployment, sid: str, since: int | None = None) -> tuple[WsPeer, dict[str, Any]]:
    client = d.client()
    frame: dict[str, Any] = {"type": "subscribe", "sessionId": sid}
    if since is not None:
        frame["since"] = since
    client.send(frame)
    return client, client.recv()


def _acked(client: WsPeer, frame: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
    """Send and wait for the ack; the frames that came first (an ack waits for the store)."""
    request_id = f"r{random.getrandbits(32)}"
    client.send({**frame, "requestId": request_id})
    _, before = client.recv_until(
        lambda f: f.get("requestId") == request_id and f["type"] == "ack", timeout=timeout
    )
    return before


def _first(client: WsPeer, seen: list[dict[str, Any]], kind: str, timeout: float = 30) -> dict[str, Any]:
    for frame in seen:
        if frame["type"] == kind:
            return frame
    return client.recv_until(lambda f: f["type"] == kind, timeout=timeout)[0]


def _history_is_sound(d: Deployment, sid: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = d.session(sid)["messages"]
    ids = [m["id"] for m in messages]
    assert len(ids) == len(set(ids)), f"duplicate messages in the history: {ids}"
    return messages


def test_a_graceful_restart_mid_turn_keeps_the_container_and_the_turn_ends_with_its_result(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
    sid = d.create()
    d.wait_status(sid, "idle")
    client, _ = _subscribed(d, sid)
    seen = _acked(client, {"type": "send_prompt", "sessionId": sid, "content": "/slow 30"})
    first = _first(client, seen, "stream")
    container = d.container_of(sid)
    assert container is not None
    d.terminate()
    after = d.container_of(sid)
    assert after is not None and after["Id"] == container["Id"] and after["State"] == "running"
    d.start()
    again, _ = _subscribed(d, sid, since=first["seq"])
    result, replayed = again.recv_until(lambda f: f["type"] == "result", timeout=30)
    numbers = [f["seq"] for f in [*replayed, result]]
    assert numbers == sorted(set(numbers)) and numbers[0] > first["seq"], numbers
    assert result["isError"] is False
    messages = _history_is_sound(d, sid)
    assert [m["content"] for m in messages if m["kind"] == "user"] == ["/slow 30"]
    reply = "".join(f"t{i} " for i in range(30))
    assert [m["content"] for m in messages if m["kind"] == "assistant"] == [reply]
    assert d.status(sid) == "idle"


def test_a_session_whose_container_was_removed_while_the_server_was_down_ends_in_error(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start()
    sid = d.create()
    d.wait_status(sid, "idle")
    d.make_durable(sid)
    d.kill9()
    container = d.container_of(sid)
    assert container is not None
    d.docker.api.remove_container(container["Id"], force=True)
    d.start()
    body = d.wait_status(sid, "error")
    reason = "Session container is gone: it was removed while Berth was not running"
    assert body["session"]["statusReason"] == reason
    assert body["messages"][-1]["content"] == reason
    assert d.call("DELETE", f"/api/sessions/{sid}")[0] == 204
    d.assert_nothing_left()


def test_a_session_whose_agent_is_down_during_the_restart_waits_for_it(deployment: Deployment) -> None:
    d = deployment
    d.start()
    sid = d.create()
    d.wait_status(sid, "idle")
    d.make_durable(sid)
    container = d.container_of(sid)
    assert container is not None
    d.docker.api.pause(container["Id"])
    d.kill9()
    d.start()
    body = d.wait_status(sid, "reconnecting")
    assert "Berth restarted" in body["session"]["statusReason"]
    d.docker.api.unpause(container["Id"])
    d.wait_status(sid, "idle", timeout=30)
    client, _ = _subscribed(d, sid)
    seen = _acked(client, {"type": "send_prompt", "sessionId": sid, "content": "still there?"})
    result = _first(client, seen, "result")
    assert result["result"] == "You said: still there?"


def _pool_containers(d: Deployment) -> list[dict[str, Any]]:
    return [c for c in d.containers() if c["Labels"].get(LABEL_SESSION, "").startswith("pool-")]


def _pooled_agent_waiting(d: Deployment) -> dict[str, Any] | None:
    """A running pool container whose agent is connected to its slot (so a create claims it)."""
    for container in _pool_containers(d):
        try:
            logs = d.docker.api.logs(container["Id"]).decode(errors="replace")
        except docker.errors.NotFound:
            continue  # replaced by the pool meanwhile
        if container["State"] == "running" and "(connection 1)" in logs:
            return container
    return None


def test_a_session_claimed_from_the_warm_pool_survives_a_kill_9_like_any_other(
    deployment: Deployment,
) -> None:
    d = deployment
    d.start("--warm", "1")
    pooled = wait_until(lambda: _pooled_agent_waiting(d), timeout=60, what="a pooled agent waiting")
    sid = d.create()
    d.wait_status(sid, "idle")
    assert d.container_of(sid) is None, "the session was cold-started, not claimed from the pool"
    client, _ = _subscribed(d, sid)
    seen = _acked(client, {"type": "send_prompt", "sessionId": sid, "content": "before"})
    assert _first(client, seen, "result")["result"] == "You said: before"
    d.make_durable(sid)
    d.kill9()
    d.start("--warm", "1")
    d.wait_status(sid, "idle", timeout=30)
    running = {c["Id"]: c["State"] for c in d.containers()}
    assert running.get(pooled["Id"]) == "running", "the claimed container was not kept"
    again, _ = _subscribed(d, sid)
    seen = _acked(again, {"type": "send_prompt", "sessionId": sid, "content": "after"})
    assert _first(again, seen, "result")["result"] == "You said: after"
    users = [m["content"] for m in _history_is_sound(d, sid) if m["kind"] == "user"]
    assert users == ["before", "after"]
    assert d.call("DELETE", f"/api/sessions/{sid}")[0] == 204
    d.terminate()
    d.assert_nothing_left()


def test_an_agent_that_never_comes_back_ends_the_session_after_the_grace_period(
    tmp_path: Path, docker_runtime: Any
) -> None:
    d = Deployment(tmp_path, reconnect_grace="1")
    try:
        d.start()
        sid = d.create()
        d.wait_status(sid, "idle")
        d.make_durable(sid)
        container = d.container_of(sid)
        assert container is not None
        d.docker.api.pause(container["Id"])
        d.kill9()
        d.start()
        body = d.wait_status(sid, "error", timeout=30)
        assert body["session"]["statusReason"] == "Session agent did not reconnect within 1 s"
        d.docker.api.unpause(container["Id"])
    finally:
        d.cleanup()


# ---------------------------------------------------------------- kill -9 rounds

ROUNDS = 20


class _Tracked:
    """One session as a client followed it: what it saw acknowledged, its last seq."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.last_seq = 0
        self.acked_prompts: list[str] = []
        self.client: WsPeer | None = None

    def follow(self, d: Deployment) -> None:
        client, snapshot = _subscribed(d, self.sid, since=self.last_seq or None)
        self.client = client
        if snapshot["type"] == "snapshot":
            self.last_seq = snapshot["seq"]
        else:
            self._saw(snapshot)

    def _saw(self, frame: dict[str, Any]) -> None:
        if "seq" in frame and frame["type"] != "snapshot":
            assert frame["seq"] > self.last_seq, f"seq {frame['seq']} after {self.last_seq}: replayed twice"
            self.last_seq = frame["seq"]
        if frame["type"] == "snapshot":
            self.last_seq = frame["seq"]

    def until(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{self.sid}: no matching frame within {timeout} s; saw {seen[-20:]}"
            frame = self.client.recv(remaining)
            seen.append(frame["type"])
            self._saw(frame)
            if predicate(frame):
                return frame

    def command(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """Send and wait for the ack (it comes once stored, so events may come first); the frames seen."""
        request_id = f"r{random.getrandbits(32)}"
        assert self.client is not None
        self.client.send({**frame, "sessionId": self.sid, "requestId": request_id})
        frames: list[dict[str, Any]] = []

        def acked(f: dict[str, Any]) -> bool:
            frames.append(f)
            return f.get("requestId") == request_id and f["type"] in ("ack", "protocol_error")

        assert self.until(acked)["type"] == "ack", frames[-1]
        return frames


def _settle_after_restart(d: Deployment, t: _Tracked) -> None:
    """Catch up, then bring the session back to idle (answering an approval it waits on)."""
    t.follow(d)
    body = d.wait_status(t.sid, "idle", "running", "awaiting_approval", timeout=30)
    if body["session"]["status"] == "awaiting_approval":
        approval = body["pendingApproval"]
        t.command({"type": "approve_tool", "approvalId": approval["id"], "allow": True})
    d.wait_status(t.sid, "idle", timeout=30)
    messages = _history_is_sound(d, t.sid)
    users = [m["content"] for m in messages if m["kind"] == "user"]
    assert users == t.acked_prompts, "an acknowledged prompt is missing from the history (or one too many)"


def test_kill_9_at_random_points_of_real_sessions_loses_nothing_acknowledged(deployment: Deployment) -> None:
    d = deployment
    seed = int(os.environ.get("BERTH_KILL_SEED") or time.time_ns() % 1_000_000)
    print(f"kill -9 rounds with BERTH_KILL_SEED={seed}")
    rng = random.Random(seed)
    d.start()
    tracked = [_Tracked(d.create(f"k{i}")) for i in range(2)]
    for t in tracked:
        d.wait_status(t.sid, "idle")
        t.follow(d)
    timings = []
    for round_no in range(ROUNDS):
        began = time.monotonic()
        for t in tracked:
            action = rng.choice(["idle", "stream", "approval"])
            prompt = {
                "idle": None,
                "stream": f"/slow {rng.randint(2, 12)}",
                "approval": "/tool Bash echo hi",
            }[action]
            if prompt is not None:
                seen = t.command({"type": "send_prompt", "content": prompt})
                t.acked_prompts.append(prompt)
                if action == "approval" and not any(f["type"] == "approval_request" for f in seen):
                    t.until(lambda f: f["type"] == "approval_request")
        time.sleep(rng.uniform(0, 0.2))  # the random point of the kill
        d.kill9()
        d.start()
        for t in tracked:
            _settle_after_restart(d, t)
        timings.append(time.monotonic() - began)
        assert len(d.containers()) == len(tracked), f"round {round_no}: {len(d.containers())} containers"
    print(f"{ROUNDS} kill -9 rounds, {sum(timings) / len(timings):.2f} s each on average")
    for t in tracked:
        assert d.call("DELETE", f"/api/sessions/{t.sid}")[0] == 204
    d.terminate()
    d.assert_nothing_left()
