"""A session's manager role and child role, inside the pure session core (issue 11).

``actors.session_core`` calls these at a few marked points. For a manager
session the input goes through the manager core (``actors.manager_core``),
whose effects are turned into the session's own: its timers are armed in the
session state (so a firing not armed there is ignored, and every ending
cancels them), its prompts go to the agent like any user message, its
onboarding question becomes the session's pending question. For a managed
child the session's changes become reports told to the manager's actor.

The manager core measures time on the session clock (``now.mono``); users
and histories speak Unix time, converted here at the edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from msgspec.structs import replace as replace_struct

from actors import child_reports as reports
from actors import effects as fx
from actors.manager_core import step_manager
from actors.manager_events import (
    BatchDue,
    ChildStaleDue,
    ContinueDue,
    ManagerEnded,
    ManagerGone,
    ManagerInput,
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
from actors.manager_state import BATCH, CONTINUE, RESUME, STALE, manager_info
from actors.outcome import Rejected
from actors.session_state import AwaitingAnswer, Idle, Live
from transport import protocol as p

if TYPE_CHECKING:
    from actors.session_core import _Step

MANAGER_COMMANDS = (PauseManager, ResumeManager, ReportStep)
MANAGER_INPUTS: tuple[type, ...] = get_args(ManagerInput)


def _timer_of(event: Any) -> str | None:
    match event:
        case BatchDue():
            return BATCH
        case ContinueDue():
            return CONTINUE
        case ResumeDue():
            return RESUME
        case ChildStaleDue(child_id=cid):
            return STALE + cid
    return None


def timer_message(name: str) -> Any | None:
    """The message a manager timer named ``name`` delivers (to re-arm it after a restart)."""
    if name.startswith(STALE):
        return ChildStaleDue(name[len(STALE) :])
    return {BATCH: BatchDue(), CONTINUE: ContinueDue(), RESUME: ResumeDue()}.get(name)


# ---------------------------------------------------------------- manager


def manager_input(s: _Step, event: Any) -> Rejected | None:
    """One input for the manager core; the outcome when it was a command."""
    state = s.s.manager
    if state is None:
        if isinstance(event, MANAGER_COMMANDS):
            return Rejected(f"session {s.s.session_id} is not a manager session", 409)
        return None  # a child's report reaching a session that manages nobody
    timer = _timer_of(event)
    if timer is not None and not s.fired(timer):
        return None  # a firing of a timer no longer armed
    if isinstance(event, PauseManager) and event.resume_at is not None:
        event = PauseManager(event.resume_at - s.now.wall + s.now.mono)
    new, effects = step_manager(state, event, s.now.mono, s.s.rules.manager)
    s.set(manager=new)
    outcome: Rejected | None = None
    for effect in effects:
        match effect:
            case fx.ToAgent(frame=frame):
                s.to_agent(frame)
            case fx.RecordMessage(message=message):
                s.record(replace_struct(message, timestamp=s.now.wall))
            case fx.AskUser(question=question):
                ask(s, replace_struct(question, timestamp=s.now.wall))
            case fx.StartTimer(name=name, delay=delay, message=message):
                s.arm(name, delay, message)
            case fx.CancelTimer(name=name):
                s.disarm(name)
            case fx.Reply(outcome=result):
                outcome = result
            case fx.Persist():
                pass  # the manager state is part of what the session core persists
            case _:
                s.emit(effect)  # TellSession, EndSession: the shell's business
    info = manager_info(new)
    if info.resume_at is not None:
        info = replace_struct(info, resume_at=info.resume_at - s.now.mono + s.now.wall)
    if info != s.s.info.manager:
        s.info(manager=info)
    return outcome


def ask(s: _Step, question: p.PendingQuestion) -> None:
    s.set(turn=AwaitingAnswer(question))
    s.publish_info()
    sid = s.s.session_id
    s.publish(lambda seq: p.QuestionAsked(session_id=sid, seq=seq, question=question))


def is_onboarding(s: _Step, question_id: str) -> bool:
    manager = s.s.manager
    return manager is not None and question_id == manager.onboarding_question_id


def onboarding_pending(s: _Step) -> Rejected | None:
    """A manager still asking its onboarding question takes no prompt before the answer."""
    manager = s.s.manager
    if manager is None or manager.onboarding != "asked":
        return None
    return Rejected(
        "this manager is waiting for the answer to its onboarding question "
        f"({manager.onboarding_question_id}): answer it first",
        409,
    )


def onboarding_answer(s: _Step, question_id: str, answers: dict[str, str]) -> Rejected | None:
    """The onboarding answer configures the manager; it is not the agent's business."""
    turn = s.s.turn
    if not isinstance(turn, AwaitingAnswer) or turn.question.id != question_id:
        return Rejected(f"no pending question with id {question_id!r}", 409)
    s.set(turn=Idle())
    return manager_input(s, OnboardingAnswered(answers))


def interrupted(s: _Step) -> bool:
    """An interrupt for a manager; True when it was idle (the interrupt cancelled its nudge)."""
    if s.s.manager is None or s.s.final:
        return False
    manager_input(s, ManagerInterrupted())
    return isinstance(s.s.turn, Idle)


def ended(s: _Step) -> None:
    """The session is ending: a manager's timers go and its children are ended (or orphaned)."""
    if s.s.manager is not None:
        manager_input(s, ManagerEnded(deleted=s.s.deleted))


# ---------------------------------------------------------------- both


def started(s: _Step) -> None:
    if s.s.managed is not None:
        s.effects.extend(reports.started(s.s.managed, s.s.session_id, s.s.info.name))


def user_message(s: _Step) -> None:
    if s.s.manager is not None:
        manager_input(s, ManagerTurnStarted())
    if s.s.managed is not None:
        s.set(managed=reports.user_message(s.s.managed))


def after_frame(s: _Step, frame: p.AgentToServer, was_live: bool) -> None:
    """What the roles make of an agent frame the session has just applied."""
    managed = s.s.managed
    if managed is not None:
        managed, told = reports.agent_traffic(managed, s.s.session_id, s.now.mono, s.s.rules.manager)
        s.effects.extend(told)
        match frame:
            case p.SdkMessage(message=message) if message.kind == "assistant":
                managed = reports.assistant_said(managed, message.content, s.s.rules.manager)
            case p.Result(is_error=is_error) if was_live:
                managed, told = reports.turn_ended(managed, s.s.session_id, is_error)
                s.effects.extend(told)
            case p.ApprovalRequest(approval=approval) if was_live:
                s.effects.extend(reports.approval_requested(managed, s.s.session_id, approval))
        s.set(managed=managed)
    if s.s.manager is not None:
        match frame:
            case p.Ready() if isinstance(s.s.lifecycle, Live):
                manager_input(s, ManagerReady())
            case p.Result(context_usage=usage) if was_live:
                manager_input(s, ManagerTurnEnded(usage.output_tokens if usage else None))


def status_changed(s: _Step, before: p.SessionInfo) -> None:
    """A managed child's status change, told to its manager (called once per step)."""
    managed = s.s.managed
    if managed is not None and before.status is not s.s.info.status:
        s.effects.extend(
            reports.status_changed(
                managed, s.s.session_id, before.status, s.s.info.status, s.s.info.status_reason
            )
        )


def orphaned(s: _Step, gone: ManagerGone) -> None:
    if s.s.managed is not None and s.s.managed.manager_id == gone.manager_id:
        s.set(managed=None)
        s.info(managed_by=None)


def container_env(s: _Step, env: dict[str, str]) -> None:
    if s.s.manager is not None:
        env["BERTH_MANAGER"] = "1"
