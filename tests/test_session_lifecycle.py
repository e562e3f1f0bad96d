"""The lifecycle rules, fast: a stub runtime and a manual clock.

The same rules run against a real Docker engine in test_docker_lifecycle.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from actors.api import Berth, BerthError
from actors.clock import ManualClock
from actors.messages import GetView, Subscribe
from tests.agent_double import attach, detach, say
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p


def status(berth: Berth, sid: str) -> str:
    return berth.get_session(sid).info.status.value


def history(berth: Berth, sid: str) -> str:
    return "\n".join(m.content for m in berth.get_session(sid).history)


def started(berth: Berth, runtime: StubRuntime, sid: str) -> Any:
    return wait_until(lambda: runtime.by_session(sid), what="the container to start")


def ready_session(berth: Berth, runtime: StubRuntime) -> tuple[str, Any]:
    sid = berth.create_session(name="ready")
    started(berth, runtime, sid)
    link = attach(berth, sid)
    say(berth, sid, link, p.Ready())
    wait_until(lambda: status(berth, sid) == "idle", what="idle")
    return sid, link


def test_a_created_session_starts_its_container_and_becomes_idle_when_its_agent_is_ready(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid = berth.create_session(name="demo")
    assert status(berth, sid) == "starting"
    container = started(berth, runtime, sid)
    assert container.spec.labels["berth.session"] == sid
    assert container.spec.labels["berth.instance"] == tree.base.instance_id
    link = attach(berth, sid)
    say(berth, sid, link, p.Ready())
    wait_until(lambda: status(berth, sid) == "idle", what="idle")
    assert "Session container ready" in history(berth, sid)


def test_rule1_a_failed_container_start_moves_the_session_to_error_and_schedules_eviction(tree):
    runtime = StubRuntime()
    runtime.missing_images.add("nope:latest")
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, image="nope:latest", eviction_ttl=300)
    sid = berth.create_session()
    wait_until(lambda: status(berth, sid) == "error", what="error")
    view = berth.get_session(sid)
    assert "Container startup failed" in history(berth, sid)
    assert "nope:latest" in history(berth, sid)
    assert "eviction" in view.timers
    clock.advance(299.5)
    assert berth.list_sessions()[0].id == sid
    clock.advance(0.5)
    assert berth.list_sessions() == []  # advance returns once the eviction happened


def test_rule2_an_unexpected_agent_disconnect_moves_the_session_to_error_and_schedules_eviction(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, reconnect_grace=0)
    sid, link = ready_session(berth, runtime)
    detach(berth, sid, link)
    wait_until(lambda: status(berth, sid) == "error", what="error")
    assert "disconnected unexpectedly" in history(berth, sid)
    assert "eviction" in berth.get_session(sid).timers


def test_rule2_with_a_grace_period_a_disconnect_is_reconnecting_and_its_expiry_is_error(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, reconnect_grace=30)
    sid, link = ready_session(berth, runtime)
    detach(berth, sid, link)
    wait_until(lambda: status(berth, sid) == "reconnecting", what="reconnecting")
    clock.advance(29.5)
    assert status(berth, sid) == "reconnecting"
    clock.advance(0.5)
    assert status(berth, sid) == "error"
    assert "did not reconnect within 30 s" in history(berth, sid)
    assert "eviction" in berth.get_session(sid).timers


def test_messages_sent_while_reconnecting_reach_the_returning_agent_in_order(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, reconnect_grace=30)
    sid, link = ready_session(berth, runtime)
    detach(berth, sid, link)
    wait_until(lambda: status(berth, sid) == "reconnecting", what="reconnecting")
    berth.send_message(sid, "one")
    berth.send_message(sid, "two")
    second = attach(berth, sid)
    wait_until(lambda: status(berth, sid) == "idle", what="back to idle")
    wait_until(lambda: len(second.frames(p.UserMessage)) == 2, what="queued messages")
    assert [f.content for f in second.frames(p.UserMessage)] == ["one", "two"]


def test_rule3_deleting_a_session_cancels_its_timers_removes_its_container_and_stops_its_actor(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock)
    sid = berth.create_session()
    container = started(berth, runtime, sid)
    ref = berth.lookup(sid).ref
    assert "startup" in ref.ask(GetView()).timers
    berth.delete_session(sid)
    wait_until(lambda: not ref.is_alive(), what="the actor to stop")
    wait_until(lambda: container.id in runtime.removed, what="container removal")
    assert berth.timers.pending() == 0
    with pytest.raises(BerthError) as err:
        berth.get_session(sid)
    assert err.value.code == 404


def test_rule3_a_timer_firing_already_queued_behind_a_delete_never_takes_effect(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, startup_timeout=10)
    seen: list[Any] = []
    berth.bus.subscribe(seen.append)
    sid = berth.create_session()
    started(berth, runtime, sid)
    ref = berth.lookup(sid).ref
    release = threading.Event()

    def blocking_sink(event: Any) -> None:
        release.wait(timeout=10)

    ref.tell(Subscribe(blocking_sink))  # the snapshot delivery holds the actor's thread
    berth.delete_session(sid)  # queued behind it
    clock.advance(11, settle=False)  # the startup timeout fires: its message queues behind the delete
    wait_until(lambda: berth.timers.pending() == 0, what="the firing to be queued")
    release.set()
    wait_until(lambda: not ref.is_alive(), what="the actor to stop")
    texts = [e.message.content for e in seen if isinstance(e, p.MessageAdded)]
    assert not [t for t in texts if "timed out" in t]
    statuses = [e.session.status for e in seen if isinstance(e, p.SessionUpdate)]
    assert statuses[-1] == "terminated" and "error" not in statuses


def test_rule4_a_session_without_a_token_retries_once_after_a_delay_then_starts_without_one(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, token_retry_delay=5, environ={}, agent_runner="sdk")
    sid = berth.create_session()
    wait_until(lambda: "retrying in 5 s" in history(berth, sid), what="the retry note")
    assert runtime.by_session(sid) is None
    assert berth.get_session(sid).info.status == "starting"  # the actor still serves messages
    clock.advance(5)
    container = started(berth, runtime, sid)
    assert "Starting without an OAuth token" in history(berth, sid)
    assert "oauth-token" not in container.secrets_seen
    assert "session-token" in container.secrets_seen


def test_rule4_the_token_is_written_for_the_container_and_pushed_when_its_agent_registers(
    tree, tmp_path: Path
):
    claude = tmp_path / ".claude"
    claude.mkdir()
    (claude / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefghijklmnop", "expiresAt": None}})
    )
    runtime = StubRuntime()
    berth = tree(runtime=runtime, claude_dir=claude, agent_runner="sdk")
    sid = berth.create_session()
    container = started(berth, runtime, sid)
    assert container.secrets_seen["oauth-token"] == "sk-ant-oat01-abcdefghijklmnop"
    assert "sk-ant" not in json.dumps(dict(container.spec.env))
    link = attach(berth, sid)
    wait_until(lambda: link.frames(p.TokenUpdate), what="token_update")
    assert link.frames(p.TokenUpdate)[0].token == "sk-ant-oat01-abcdefghijklmnop"


def test_rule5_a_session_still_starting_after_the_startup_timeout_goes_to_error(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, startup_timeout=120)
    sid = berth.create_session()
    started(berth, runtime, sid)
    clock.advance(119.5)
    assert status(berth, sid) == "starting"
    clock.advance(0.5)
    assert status(berth, sid) == "error"
    assert "timed out after 120 s" in history(berth, sid)
    assert "eviction" in berth.get_session(sid).timers


def test_rule5_a_container_that_exits_on_its_own_moves_a_live_session_to_error_with_the_exit_code(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, _ = ready_session(berth, runtime)
    runtime.exit(runtime.by_session(sid).id, 137)
    wait_until(lambda: status(berth, sid) == "error", what="error")
    assert "exit code 137" in history(berth, sid)


class _OutputUnreadable(StubRuntime):
    def last_output(self, container_id: str, lines: int) -> str:
        raise RuntimeError("the engine went away")


def test_a_container_whose_output_cannot_be_read_still_ends_its_session_with_the_exit_code(tree):
    runtime = _OutputUnreadable()
    berth = tree(runtime=runtime)
    sid, _ = ready_session(berth, runtime)
    runtime.exit(runtime.by_session(sid).id, 1, "2026-12-01 10:00:00,000 ERROR agent: never read\n")
    view = berth.wait_for_status(sid, {"error"}, timeout=10)
    assert view.info.status_reason == "Session container exited unexpectedly (exit code 1)"


def test_a_container_that_exits_names_why_in_its_agents_words_with_secrets_masked(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, _ = ready_session(berth, runtime)
    output = (
        "2026-12-01 10:00:00,000 INFO agent: connected\n"
        "2026-12-01 10:00:01,000 ERROR agent: the CLI refused sk-ant-oat01-secretsecretsecret\n"
        "2026-12-01 10:00:01,500 INFO agent.app: agent exiting with code 1\n"
    )
    runtime.exit(runtime.by_session(sid).id, 1, output)
    view = berth.wait_for_status(sid, {"error"}, timeout=10)
    assert view.info.status_reason == (
        "Session container exited unexpectedly (exit code 1). "
        "Its last words: ERROR agent: the CLI refused sk-ant-***"
    )
    assert "secretsecret" not in history(berth, sid)


def test_rule6_error_is_final_late_agent_messages_do_not_revive_the_session(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, startup_timeout=1)
    sid = berth.create_session()
    started(berth, runtime, sid)
    link = attach(berth, sid)
    clock.advance(2)
    wait_until(lambda: status(berth, sid) == "error", what="error")
    say(berth, sid, link, p.Ready(), p.StatusUpdate(status="running"), p.Result(result="late"))
    late = attach(berth, sid)
    wait_until(lambda: late.closed is not None, what="the late agent to be refused")
    assert late.closed[0] == 4004
    assert status(berth, sid) == "error"
    with pytest.raises(BerthError) as err:
        berth.send_message(sid, "hello?")
    assert err.value.code == 409


def test_rule6_eviction_removes_the_session_and_its_container(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, eviction_ttl=5)
    sid, _ = ready_session(berth, runtime)
    container = runtime.by_session(sid)
    runtime.exit(container.id, 1)
    wait_until(lambda: status(berth, sid) == "error", what="error")
    clock.advance(6)
    wait_until(lambda: berth.list_sessions() == [], what="eviction")
    wait_until(lambda: container.id in runtime.removed, what="container removal")


def test_rule7_a_second_agent_connection_closes_the_first_whose_close_never_disturbs_the_second(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, reconnect_grace=0)
    sid, first = ready_session(berth, runtime)
    second = attach(berth, sid)
    wait_until(lambda: first.closed is not None, what="the first link to be closed")
    assert first.closed[0] == 4003
    detach(berth, sid, first, "closed because replaced")
    say(berth, sid, first, p.StatusUpdate(status="running"))
    berth.send_message(sid, "to the second")
    wait_until(lambda: second.frames(p.UserMessage), what="delivery to the second link")
    assert status(berth, sid) == "idle"
    assert not first.frames(p.UserMessage)


def test_rule8_terminate_stops_the_container_publishes_events_and_schedules_eviction(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, link = ready_session(berth, runtime)
    container = runtime.by_session(sid)
    with berth.subscribe(sid) as events:
        assert isinstance(events.get(5), p.Snapshot)
        berth.terminate_session(sid)
        kinds = []
        for event in events.iter(timeout=5):
            kinds.append(event)
            if isinstance(event, p.SessionUpdate) and event.session.status == "terminated":
                break
    assert any(isinstance(e, p.MessageAdded) and "terminated" in e.message.content for e in kinds)
    wait_until(lambda: container.id in runtime.removed, what="container removal")
    assert link.frames(p.Shutdown) and link.closed == (1000, "shutdown")
    assert "eviction" in berth.get_session(sid).timers


def test_the_session_limit_refuses_a_new_session_with_a_clear_error(tree):
    berth = tree(max_sessions=2)
    berth.create_session()
    berth.create_session()
    with pytest.raises(BerthError) as err:
        berth.create_session()
    assert err.value.code == 429
    assert "Session limit reached" in str(err.value)


def test_an_ended_or_deleted_session_frees_its_place_under_the_session_limit(tree):
    berth = tree(max_sessions=2)
    ended = berth.create_session()
    deleted = berth.create_session()
    berth.terminate_session(ended)
    wait_until(lambda: status(berth, ended) == "terminated", what="the end")
    third = berth.create_session()
    with pytest.raises(BerthError) as full:
        berth.create_session()
    assert full.value.code == 429
    berth.delete_session(deleted)
    berth.delete_session(ended)  # an ended session's place was already free: nothing more opens
    berth.create_session()
    with pytest.raises(BerthError):
        berth.create_session()
    assert third in [info.id for info in berth.list_sessions()]


def test_a_crashing_session_ends_in_error_with_the_reason_and_the_others_keep_working(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    crashing, _ = ready_session(berth, runtime)
    healthy, link = ready_session(berth, runtime)
    crashed_container = runtime.by_session(crashing)
    berth.lookup(crashing).ref.tell(object())  # a message no session understands: a bug
    wait_until(lambda: status(berth, crashing) == "error", what="the crash to be reported")
    assert "Session crashed: TypeError" in history(berth, crashing)
    wait_until(lambda: crashed_container.id in runtime.removed, what="its container removal")
    berth.send_message(healthy, "still there?")
    wait_until(lambda: link.frames(p.UserMessage), what="the healthy session to relay")
    assert status(berth, healthy) == "idle"


def test_unknown_session_ids_get_a_404_error_naming_the_id(tree):
    berth = tree()
    for call in (berth.get_session, berth.delete_session, berth.interrupt):
        with pytest.raises(BerthError) as err:
            call("no-such-session")
        assert err.value.code == 404 and "no-such-session" in str(err.value)


def test_subscribing_since_a_sequence_number_replays_exactly_the_missed_events(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, link = ready_session(berth, runtime)
    seen = berth.get_session(sid).seq
    say(berth, sid, link, p.Stream(message_id="m1", tokens=["a"]), p.Stream(message_id="m1", tokens=["b"]))
    say(berth, sid, link, p.Result(result="ab"))
    wait_until(lambda: status(berth, sid) == "idle" and berth.get_session(sid).seq >= seen + 3, what="events")
    with berth.subscribe(sid, since=seen) as events:
        first = events.get(5)
        second = events.get(5)
    assert isinstance(first, p.StreamTokens) and first.seq == seen + 1 and first.tokens == ["a"]
    assert isinstance(second, p.StreamTokens) and second.seq == seen + 2


def test_one_slow_container_start_does_not_hold_up_other_sessions(tree):
    runtime = StubRuntime()
    slow_gate = threading.Event()
    runtime.hold_next = slow_gate
    berth = tree(runtime=runtime)
    slow = berth.create_session(name="slow")
    wait_until(lambda: runtime.hold_next is None, what="the slow start to begin")
    fast = berth.create_session(name="fast")
    started(berth, runtime, fast)
    assert runtime.by_session(slow) is None
    slow_gate.set()
    started(berth, runtime, slow)


def test_deleting_a_session_while_its_container_is_starting_removes_the_container_once_started(tree):
    runtime = StubRuntime()
    gate = threading.Event()
    runtime.hold_next = gate
    berth = tree(runtime=runtime)
    sid = berth.create_session()
    wait_until(lambda: runtime.hold_next is None, what="the start to begin")
    berth.delete_session(sid)
    gate.set()
    wait_until(lambda: runtime.removed, what="the late container to be removed")
    assert runtime.by_session(sid) is None


def test_the_embedding_api_applies_the_same_input_bounds_as_the_server(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, max_prompt_chars=10, max_model_chars=5)
    for fields, named in (
        ({"runner": "../../bin/sh"}, "unknown runner"),
        ({"model": "x" * 6}, "the limit is 5"),
        ({"repo_url": "https://example.com/" + "a" * 3000}, "repository URL"),
        ({"permission_mode": "root"}, "unknown permission mode"),
    ):
        with pytest.raises(BerthError) as refused:
            berth.create_session(name="bounded", **fields)
        assert refused.value.code == 400 and named in str(refused.value)
        assert len(str(refused.value)) < 300
    sid, _ = ready_session(berth, runtime)
    with pytest.raises(BerthError) as long_prompt:
        berth.send_message(sid, "y" * 11)
    assert long_prompt.value.code == 400 and "the limit is 10" in str(long_prompt.value)
