"""The manager's rules on the pure core, each at exact times (t = 0 is the harness start)."""

from __future__ import annotations

from dataclasses import replace

from actors.config import BerthConfig
from actors.effects import AskUser, EndSession, Reply, TellSession, ToAgent
from actors.manager_events import (
    BatchDue,
    ChildActive,
    ChildApprovalRequested,
    ChildCompleted,
    ChildEnded,
    ChildFailed,
    ChildReady,
    ChildStaleDue,
    ChildStatus,
    ContinueDue,
    ManagerEnded,
    ManagerGone,
    ManagerInterrupted,
    ManagerReady,
    ManagerTurnEnded,
    ManagerTurnStarted,
    OnboardingAnswered,
    PauseManager,
    ReportStep,
    ResumeDue,
    ResumeManager,
)
from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q, PLAN_Q, TASK_Q
from actors.manager_rules import ManagerRules
from actors.manager_state import continue_delay, manager_info
from tests.manager_harness import Harness
from transport.protocol import Interrupt, PendingApproval


def idle_manager(**config: object) -> Harness:
    h = Harness(config=ManagerRules.of(replace(BerthConfig(), **config)))  # type: ignore[arg-type]
    h.onboarded()
    return h


def fast_turn(h: Harness, seconds: float = 1.0, tokens: int = 10) -> None:
    h.advance(seconds)
    h.feed(ManagerTurnEnded(output_tokens=tokens))


# ---------------------------------------------------------------- delivery and batching


def test_events_arriving_together_reach_an_idle_manager_in_one_message_after_the_batch_delay():
    h = idle_manager()
    h.child("a")
    h.child("b")
    h.feed(ChildReady("a"))
    h.advance(1.0)
    h.feed(ChildCompleted("b", "done with b"))
    h.advance(0.999)
    assert h.sent == []
    h.advance(0.001)
    assert h.sent_at() == [2.0]
    assert "[CHILD SESSION READY]" in h.sent[0].content and "done with b" in h.sent[0].content
    assert h.state.pending == () and not h.state.idle


def test_events_for_a_busy_manager_wait_for_its_turn_to_end_then_the_batch_delay():
    h = idle_manager()
    h.child("a")
    h.feed(ManagerTurnStarted())
    h.feed(ChildReady("a"))
    h.advance(30)
    assert h.sent == [] and len(h.state.pending) == 1
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(1.999)
    assert h.sent == []
    h.advance(0.001)
    assert h.sent_at() == [32.0]


def test_a_full_queue_lets_the_oldest_events_go_and_the_delivery_says_how_many():
    h = idle_manager(manager_event_queue_limit=2)
    h.feed(ManagerTurnStarted())
    for cid in ("a", "b", "c"):
        h.child(cid)
        h.feed(ChildReady(cid))
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(2.0)
    content = h.sent[0].content
    assert content.startswith("[EVENTS DROPPED] 1 older events")
    assert "(a)" not in content and "(b)" in content and "(c)" in content


def test_a_completed_event_carries_the_childs_output_bounded():
    h = idle_manager(manager_child_output_limit=10)
    h.child("a", "alpha")
    h.feed(ChildCompleted("a", "0123456789ABCDEF"))
    h.advance(2.0)
    assert "0123456789\n...(truncated, 6 more characters)" in h.sent[0].content


def test_an_approval_event_carries_the_tool_its_input_truncated_and_the_approval_id():
    h = idle_manager(manager_approval_input_limit=40)
    h.child("a", "alpha")
    approval = PendingApproval(id="ap-1", tool_name="Bash", tool_input={"command": "x" * 100}, timestamp=0)
    h.feed(ChildApprovalRequested("a", approval))
    h.advance(2.0)
    text = h.sent[0].content
    assert "asks to use Bash" in text and "Approval ID: ap-1" in text
    assert "x" * 100 not in text and "...(truncated" in text
    assert manager_info(h.state).children[0].status == "awaiting_approval"


def test_a_child_that_fails_leaves_the_list_and_its_error_is_delivered():
    h = idle_manager()
    h.child("a", "alpha")
    h.child("b", "beta")
    h.feed(ChildFailed("a", "Session agent failed: boom"))
    assert [c.id for c in manager_info(h.state).children] == ["b"]
    h.advance(2.0)
    assert "[CHILD SESSION ERROR]" in h.sent[0].content and "boom" in h.sent[0].content


def test_a_child_that_ends_leaves_the_list_and_frees_the_continue_nudge():
    h = idle_manager()
    h.child("a")  # starting: at work
    h.advance(100)
    assert h.sent == []
    h.feed(ChildEnded("a", "deleted"))
    assert manager_info(h.state).children == []
    h.advance(3.0)
    assert h.sent_at() == [103.0] and h.sent[0].content.startswith("Continue your manager loop")


# ---------------------------------------------------------------- auto-continue and backoff


def test_an_idle_manager_with_nothing_to_wait_for_is_nudged_after_three_seconds():
    h = idle_manager()
    h.feed(ManagerTurnStarted())
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(2.999)
    assert h.sent == []
    h.advance(0.001)
    assert h.sent_at() == [3.0]
    assert "Remember: focus on bugs and enhancements." in h.sent[0].content


def test_a_streak_of_fast_turns_backs_the_nudge_off_exponentially_up_to_a_minute():
    h = idle_manager()
    h.feed(ManagerTurnStarted())
    h.feed(ManagerTurnEnded(output_tokens=500))
    gaps = []
    for _ in range(9):
        before = h.now
        h.advance(60)
        assert h.sent, "no nudge within a minute"
        gaps.append(round(h.sent[-1].at - before, 6))
        h.now = h.sent[-1].at
        h.sent.clear()
        fast_turn(h)
    # after n fast turns the nudge waits max(3, 2 * 2**(n-1)), at most 60
    assert gaps == [3.0, 3.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_slow_turn_or_a_long_answer_resets_the_streak():
    config = ManagerRules.of(BerthConfig())
    assert [continue_delay(n, config) for n in (0, 1, 2, 3)] == [3.0, 3.0, 4.0, 8.0]
    h = idle_manager()
    h.state = replace(h.state, fast_streak=4)
    h.feed(ContinueDue())
    fast_turn(h, seconds=3.0, tokens=10)  # 3 s is not faster than 3 s
    assert h.state.fast_streak == 0
    h.state = replace(h.state, fast_streak=4)
    h.feed(ContinueDue())
    fast_turn(h, seconds=1.0, tokens=50)
    assert h.state.fast_streak == 0


def test_an_interrupt_resets_the_streak_and_cancels_the_batch_and_the_nudge():
    h = idle_manager()
    h.state = replace(h.state, fast_streak=5)
    h.feed(ContinueDue())
    h.feed(ManagerInterrupted())
    h.advance(0.5)
    h.feed(ManagerTurnEnded(output_tokens=0))
    assert h.state.fast_streak == 0
    h.sent.clear()
    h.advance(3.0)
    assert h.sent_at() == [3.5]


def test_an_interrupt_of_an_idle_manager_cancels_its_pending_nudge():
    h = idle_manager()
    h.feed(ManagerTurnStarted())
    h.feed(ManagerTurnEnded(output_tokens=500))
    assert "manager-continue" in h.timers
    h.feed(ManagerInterrupted())
    assert h.timers == {}
    h.advance(120)
    assert h.sent == []


def test_children_at_work_hold_the_nudge_back_but_idle_or_waiting_children_do_not():
    h = idle_manager()
    h.child("a")
    h.feed(ManagerTurnStarted())
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(100)
    assert h.sent == []  # "a" is starting: it will report
    h.feed(ChildStatus("a", "awaiting_approval"))
    h.advance(3.0)
    assert h.sent_at() == [103.0]


# ---------------------------------------------------------------- stale children


def test_a_running_child_silent_for_thirty_seconds_is_reported_once_until_its_next_traffic():
    h = idle_manager()
    h.child("a", "alpha")
    h.feed(ChildStatus("a", "running"))  # t=0
    h.advance(20)
    h.feed(ChildActive("a"))  # t=20: the watch restarts
    h.advance(29.999)
    assert h.sent == []
    h.advance(0.001)  # t=50: stale; delivered after the batch delay
    h.advance(2.0)
    assert h.sent_at() == [52.0] and "[CHILD SESSION STALE]" in h.sent[0].content
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(300)
    assert len(h.sent) == 1
    h.feed(ChildActive("a"))
    h.advance(30)
    h.feed(ManagerTurnStarted())
    h.advance(30)
    assert len(h.state.pending) == 1  # reported again, after new traffic


def test_the_stale_time_is_a_config_field():
    h = idle_manager(manager_child_stale=5.0)
    h.child("a")
    h.feed(ChildStatus("a", "running"))
    h.advance(5.0)
    assert len(h.state.pending) == 1


def test_an_idle_child_is_never_stale():
    h = idle_manager()
    h.child("a")
    h.feed(ChildStatus("a", "running"))
    h.feed(ChildCompleted("a", "ok"))
    h.advance(2.0)
    h.feed(ManagerTurnStarted())
    h.advance(300)
    assert h.state.pending == ()


# ---------------------------------------------------------------- pause, resume, end


def test_pause_cancels_every_manager_timer_and_no_late_firing_sends_anything():
    h = idle_manager()
    h.child("a")
    h.feed(ChildStatus("a", "running"))
    h.feed(ChildReady("b"))  # batch armed
    assert {"manager-batch", "manager-stale:a"} <= set(h.timers)
    h.feed(PauseManager())
    assert h.timers == {}
    for late in (BatchDue(), ContinueDue(), ChildStaleDue("a"), ResumeDue()):
        effects = h.feed(late)
        assert not any(isinstance(e, ToAgent) for e in effects), late
    h.advance(3600)
    assert h.sent == []


def test_events_while_paused_are_kept_and_delivered_after_resume():
    h = idle_manager()
    h.feed(PauseManager())
    h.child("a")
    h.feed(ChildReady("a"))
    h.advance(600)
    assert h.sent == [] and len(h.state.pending) == 1
    h.feed(ResumeManager())
    h.advance(2.0)
    assert h.sent_at() == [602.0] and "[CHILD SESSION READY]" in h.sent[0].content


def test_pausing_a_busy_manager_interrupts_its_turn():
    h = idle_manager()
    h.feed(ManagerTurnStarted())
    effects = h.feed(PauseManager())
    assert ToAgent(Interrupt()) in effects and Reply(None) in effects


def test_a_pause_resumes_by_itself_at_resume_at_and_the_resume_resets_the_streak():
    h = idle_manager()
    h.state = replace(h.state, fast_streak=6)
    h.feed(PauseManager(resume_at=h.now + 100))
    h.advance(99.999)
    assert h.state.paused
    h.advance(0.001)
    assert not h.state.paused and h.state.fast_streak == 0
    h.advance(3.0)
    assert h.sent_at() == [103.0]


def test_resume_at_must_lie_within_the_next_24_hours():
    h = idle_manager()
    for bad in (h.now, h.now - 5, h.now + 86400 + 1):
        (reply,) = [e for e in h.feed(PauseManager(resume_at=bad)) if isinstance(e, Reply)]
        assert reply.outcome is not None and reply.outcome.code == 400
        assert not h.state.paused
    h.feed(PauseManager(resume_at=h.now + 86400))
    assert h.state.paused and h.timers["manager-resume"][0] == h.now + 86400


def test_resume_of_a_manager_that_is_not_paused_is_refused():
    h = idle_manager()
    (reply,) = h.feed(ResumeManager())
    assert isinstance(reply, Reply) and reply.outcome is not None and reply.outcome.code == 409


def test_deleting_a_manager_cancels_every_timer_ends_its_children_and_silences_it():
    h = idle_manager()
    h.child("a")
    h.child("b")
    h.feed(ChildStatus("a", "running"))
    h.feed(ChildReady("b"))
    h.feed(PauseManager(resume_at=h.now + 50))
    h.feed(ResumeManager())
    h.feed(ManagerTurnStarted())
    h.feed(ManagerTurnEnded(output_tokens=500))
    effects = h.feed(ManagerEnded(deleted=True))
    assert h.timers == {}
    assert [e for e in effects if isinstance(e, EndSession)] == [
        EndSession("a", True, "its manager mgr was deleted"),
        EndSession("b", True, "its manager mgr was deleted"),
    ]
    for late in (BatchDue(), ContinueDue(), ChildStaleDue("a"), ResumeDue(), ChildReady("a"), ManagerReady()):
        assert h.feed(late) == []
    h.advance(3600)
    assert h.sent == []


def test_a_manager_configured_to_orphan_its_children_tells_them_instead():
    h = idle_manager(manager_orphans_children=True)
    h.child("a")
    effects = h.feed(ManagerEnded(deleted=False))
    assert TellSession("a", ManagerGone("mgr")) in effects
    assert not any(isinstance(e, EndSession) for e in effects)


def test_report_step_sets_the_step_and_refuses_unknown_steps():
    h = idle_manager()
    assert Reply(None) in h.feed(ReportStep("planning"))
    assert manager_info(h.state).step == "planning"
    (reply, *_) = [e for e in h.feed(ReportStep("dancing")) if isinstance(e, Reply)]
    assert reply.outcome is not None and "planning" in reply.outcome.reason


# ---------------------------------------------------------------- onboarding


def test_the_first_ready_asks_the_preferences_and_the_answers_shape_the_first_prompt():
    h = Harness()
    effects = h.feed(ManagerReady())
    (ask,) = [e for e in effects if isinstance(e, AskUser)]
    assert ask.question.id == h.state.onboarding_question_id
    assert [q.question for q in ask.question.questions] == [FOCUS_Q, TASK_Q, EXPLORE_Q, PLAN_Q]
    h.feed(ChildReady("x"))
    h.advance(60)
    assert h.sent == []  # nothing reaches an unconfigured manager
    answers = {FOCUS_Q: "Focused task", TASK_Q: "make the parser strict", PLAN_Q: "Require approval"}
    h.feed(OnboardingAnswered(answers))
    first = h.sent[0].content
    assert "Your task: make the parser strict" in first and "wait for approval" in first
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(2.0)
    assert "[CHILD SESSION READY]" in h.sent[1].content
    assert h.feed(ManagerReady()) == [] or not any(isinstance(e, AskUser) for e in h.effects[-3:])


def test_an_agent_that_restarts_before_the_onboarding_answer_gets_the_question_asked_again():
    h = Harness()
    (first,) = [e for e in h.feed(ManagerReady()) if isinstance(e, AskUser)]
    (again,) = [e for e in h.feed(ManagerReady()) if isinstance(e, AskUser)]  # its turn ended the question
    assert again.question.id == first.question.id
    h.feed(OnboardingAnswered({EXPLORE_Q: "Explore"}))
    assert len(h.sent) == 1 and h.state.onboarding == "done"


def test_a_later_ready_does_not_ask_again():
    h = idle_manager()
    effects = h.feed(ManagerReady())
    assert not any(isinstance(e, AskUser) for e in effects)


def test_skip_exploration_and_focus_answers_shape_the_prompt_and_the_nudge():
    h = Harness()
    h.feed(ManagerReady())
    h.feed(OnboardingAnswered({FOCUS_Q: "Bugs", EXPLORE_Q: "Skip exploration"}))
    assert "Skip exploration" in h.sent[0].content and "bugs only" in h.sent[0].content
    h.feed(ManagerTurnEnded(output_tokens=500))
    h.advance(3.0)
    assert h.sent[1].content.endswith("Remember: focus on bugs only.")


# ---------------------------------------------------------------- restart (tests/test_manager_restart.py)


def test_every_manager_timer_name_maps_back_to_the_message_it_delivers():
    from actors.session_roles import _timer_of, timer_message

    for message in (BatchDue(), ContinueDue(), ResumeDue(), ChildStaleDue("c1")):
        name = _timer_of(message)
        assert name is not None and timer_message(name) == message
    assert timer_message("eviction") is None
