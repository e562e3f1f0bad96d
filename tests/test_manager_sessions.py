"""Manager sessions in the actor tree: a stub runtime, agent doubles and a manual clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors.api import Berth, BerthError
from actors.clock import ManualClock
from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q, TASK_Q
from actors.messages import Subscribe
from tests.agent_double import attach, say
from tests.fake_link import FakeLink
from tests.stub_runtime import StubRuntime
from tests.waiting import wait_until
from transport import protocol as p


def info(berth: Berth, sid: str) -> p.SessionInfo:
    return berth.get_session(sid).info


def prompts(link: FakeLink) -> list[str]:
    return [f.content for f in link.frames(p.UserMessage)]


def ready_manager(berth: Berth, runtime: StubRuntime, task: str = "") -> tuple[str, FakeLink]:
    """A configured manager whose first turn is over: idle, with nothing to wait for."""
    sid = berth.create_manager(name="boss")
    wait_until(lambda: runtime.by_session(sid), what="the manager's container")
    link = attach(berth, sid)
    say(berth, sid, link, p.Ready())
    view = berth.wait_for_status(sid, {"awaiting_answer"}, timeout=10)
    assert view.pending_question is not None
    with pytest.raises(BerthError, match="onboarding question") as early:
        berth.send_message(sid, "hello before the answer")
    assert early.value.code == 409
    answers = {FOCUS_Q: "Focused task" if task else "Both", TASK_Q: task, EXPLORE_Q: "Explore"}
    berth.answer_question(sid, view.pending_question.id, answers)
    wait_until(lambda: len(prompts(link)) == 1, what="the first prompt")
    say(berth, sid, link, p.StatusUpdate(status="running"), p.Result(result="ok"))
    berth.wait_for_status(sid, {"idle"}, timeout=10)
    return sid, link


def ready_child(berth: Berth, runtime: StubRuntime, manager: str, name: str) -> tuple[str, FakeLink]:
    cid = berth.create_session(name=name, managed_by=manager)
    wait_until(lambda: runtime.by_session(cid), what="the child's container")
    link = attach(berth, cid)
    say(berth, cid, link, p.Ready())
    berth.wait_for_status(cid, {"idle"}, timeout=10)
    return cid, link


def test_a_manager_gets_a_manager_token_file_and_its_onboarding_answers_shape_its_first_prompt(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, link = ready_manager(berth, runtime, task="fix the flaky test")
    container = runtime.by_session(sid)
    assert container is not None
    token = container.secrets_seen["manager-token"].strip()
    assert berth.manager_for_token(token) == sid
    assert container.spec.env.get("BERTH_MANAGER") == "1"
    assert token not in str(container.spec.env)
    assert "Your task: fix the flaky test" in prompts(link)[0]
    assert info(berth, sid).manager is not None and info(berth, sid).manager.configured


def test_children_record_their_manager_and_the_managers_info_lists_them_until_they_fail(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime)
    sid, _ = ready_manager(berth, runtime)
    a, _ = ready_child(berth, runtime, sid, "alpha")
    b, b_link = ready_child(berth, runtime, sid, "beta")
    assert info(berth, a).managed_by == sid
    wait_until(lambda: [c.id for c in info(berth, sid).manager.children] == [a, b], what="both listed")
    say(berth, b, b_link, p.AgentError(message="boom", fatal=True))
    wait_until(lambda: [c.id for c in info(berth, sid).manager.children] == [a], what="beta to leave")
    berth.delete_session(a)
    wait_until(lambda: info(berth, sid).manager.children == [], what="alpha to leave")


def test_a_childs_completed_turn_reaches_its_idle_manager_after_the_batch_delay(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock)
    sid, link = ready_manager(berth, runtime)
    cid, child_link = ready_child(berth, runtime, sid, "alpha")
    wait_until(lambda: "manager-batch" in berth.get_session(sid).timers, what="the ready event to queue")
    clock.advance(2)
    wait_until(lambda: len(prompts(link)) == 2, what="the ready event")
    assert "[CHILD SESSION READY]" in prompts(link)[1]
    say(berth, sid, link, p.Result(result="ok"))
    berth.send_message(cid, "work")
    output = p.ChatMessage(id="o1", kind="assistant", content="the answer is 42", timestamp=0)
    say(berth, cid, child_link, p.StatusUpdate(status="running"), p.SdkMessage(message=output), p.Result())
    wait_until(lambda: "manager-batch" in berth.get_session(sid).timers, what="the completion to queue")
    clock.advance(1.9)
    assert len(prompts(link)) == 2
    clock.advance(0.1)
    wait_until(lambda: len(prompts(link)) == 3, what="the completion event")
    assert "[CHILD SESSION COMPLETED]" in prompts(link)[2] and "the answer is 42" in prompts(link)[2]


def test_deleting_a_manager_with_a_nudge_queued_behind_the_delete_sends_nothing_and_ends_its_children(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock)
    sid, link = ready_manager(berth, runtime)
    assert "manager-continue" in berth.get_session(sid).timers
    cid, _ = ready_child(berth, runtime, sid, "alpha")
    ref = berth.lookup(sid).ref
    assert ref is not None
    sent_before = len(link.sent)
    release = threading.Event()

    def blocking_sink(event: Any) -> None:
        release.wait(timeout=10)

    ref.tell(Subscribe(blocking_sink))  # holds the manager's thread
    berth.delete_session(sid)  # queued behind it
    clock.advance(60, settle=False)  # the batch fires: its message queues behind the delete
    wait_until(lambda: berth.timers.pending() == 0 or not ref.is_alive(), what="the firings to queue")
    release.set()
    wait_until(lambda: not ref.is_alive(), what="the manager to stop")
    assert not [f for f in link.sent[sent_before:] if isinstance(f, p.UserMessage)]
    wait_until(lambda: berth.list_sessions() == [], what="the child to be deleted with its manager")
    wait_until(
        lambda: runtime.by_session(cid) is None and runtime.by_session(sid) is None,
        what="both containers to be removed",
    )


def test_a_paused_manager_keeps_child_events_and_gets_them_after_resume(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock)
    sid, link = ready_manager(berth, runtime)
    berth.pause_manager(sid)
    assert not [t for t in berth.get_session(sid).timers if t.startswith("manager-")]
    ready_child(berth, runtime, sid, "alpha")
    wait_until(lambda: info(berth, sid).manager.pending_events == 1, what="the event to be kept")
    clock.advance(3600)
    assert len(prompts(link)) == 1
    berth.resume_manager(sid)
    clock.advance(2)
    wait_until(lambda: len(prompts(link)) == 2, what="the kept event")
    assert "[CHILD SESSION READY]" in prompts(link)[1]


def test_a_running_child_silent_for_the_stale_time_is_reported_and_its_approval_request_too(tree):
    runtime = StubRuntime()
    clock = ManualClock()
    berth = tree(runtime=runtime, clock=clock, manager_child_stale=30)
    sid, link = ready_manager(berth, runtime)
    cid, child_link = ready_child(berth, runtime, sid, "alpha")
    berth.settle()  # the child's report has reached its manager
    clock.advance(2)  # the ready event
    wait_until(lambda: len(prompts(link)) == 2, what="the ready event")
    say(berth, sid, link, p.Result(result="ok"))
    berth.send_message(cid, "work")
    say(berth, cid, child_link, p.StatusUpdate(status="running"))
    berth.settle()
    clock.advance(29)
    assert len(prompts(link)) == 2
    clock.advance(1)
    clock.advance(2)
    wait_until(lambda: len(prompts(link)) == 3, what="the stale event")
    assert "[CHILD SESSION STALE]" in prompts(link)[2] and cid in prompts(link)[2]
    say(berth, sid, link, p.Result(result="ok"))
    approval = p.PendingApproval(
        id="ap-7", tool_name="Bash", tool_input={"command": "make test"}, timestamp=0
    )
    say(berth, cid, child_link, p.ApprovalRequest(approval=approval))
    berth.settle()
    clock.advance(2)
    wait_until(lambda: len(prompts(link)) == 4, what="the approval event")
    assert "asks to use Bash" in prompts(link)[3] and "Approval ID: ap-7" in prompts(link)[3]
    assert [c.status for c in info(berth, sid).manager.children] == ["awaiting_approval"]


def test_a_manager_configured_to_orphan_its_children_leaves_them_running_without_a_manager(tree):
    runtime = StubRuntime()
    berth = tree(runtime=runtime, manager_orphans_children=True)
    sid, _ = ready_manager(berth, runtime)
    cid, _ = ready_child(berth, runtime, sid, "alpha")
    berth.delete_session(sid)
    wait_until(lambda: info(berth, cid).managed_by is None, what="the child to be orphaned")
    assert info(berth, cid).status == "idle"
