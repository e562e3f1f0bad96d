"""A manager session's rules, as a pure function: (state, input, now) -> (state, effects).

The session core holds a ``ManagerState`` for manager sessions and hands it
every ``ManagerInput`` (child reports, the manager's own turns, pause/resume,
timer firings); the effects are the session's usual ones (actors.effects).
``now`` is Unix time, as the timestamps of messages are.

The rules, each checked by a unit test with exact times:

- Events for the manager (child ready, completed, error, stale, approval
  request) are queued. An idle, configured, unpaused manager gets them after
  ``manager_batch_delay`` (timed from the first), all in one user message;
  a busy or paused one keeps them queued. Past ``manager_event_queue_limit``
  the oldest give way and the next delivery says how many: never silently.
- Auto-continue: when a manager turn ends with nothing queued and no child at
  work (``starting``, ``running``, ``reconnecting``: those will report by
  themselves; an idle or waiting child waits for the manager, so it does not
  hold the nudge back), a "continue" nudge follows after
  max(``manager_continue_delay``, backoff). Backoff after a streak of n fast
  turns (turns Berth started that ended within ``manager_fast_turn`` with
  fewer than ``manager_fast_turn_tokens`` output tokens) is
  ``manager_backoff_base`` * 2**(n-1), at most ``manager_backoff_max``; a
  slower turn, an interrupt or a resume resets the streak.
- A child at work (``running``/``reconnecting``) with no agent traffic for
  ``manager_child_stale`` is reported stale, once until its next traffic.
- Delete and terminate cancel every manager timer; pause cancels them all
  but its own resume-at; interrupt cancels batching, auto-continue and the
  stale watch (re-armed, from each child's last traffic, when the interrupted
  turn ends). Every firing also re-checks the state, so one that slips past
  a cancellation still sends nothing.
- Commands (pause, resume, report step, the onboarding answer) get exactly
  one ``Reply``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from actors.effects import (
    AskUser,
    CancelTimer,
    Effect,
    EndSession,
    Persist,
    RecordMessage,
    Reply,
    StartTimer,
    TellSession,
    ToAgent,
)
from actors.manager_events import (
    STEPS,
    BatchDue,
    ChildActive,
    ChildApprovalRequested,
    ChildCompleted,
    ChildEnded,
    ChildFailed,
    ChildReady,
    ChildStaleDue,
    ChildStarted,
    ChildStatus,
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
    approval_text,
    completed_text,
    failed_text,
    ready_text,
    stale_text,
)
from actors.manager_onboarding import (
    Preferences,
    first_prompt,
    onboarding_question,
    parse_preferences,
    reminder,
)
from actors.manager_rules import ManagerRules
from actors.manager_state import (
    AT_WORK,
    BATCH,
    CONTINUE,
    CONTINUE_TEXT,
    EVENT_SEPARATOR,
    RESUME,
    STALE,
    WATCHED,
    Child,
    ManagerState,
    continue_delay,
)
from actors.outcome import Rejected
from transport.protocol import ChatMessage, Interrupt, MessageKind, UserMessage

Result = tuple[ManagerState, list[Effect]]


def step_manager(state: ManagerState, event: ManagerInput, now: float, config: ManagerRules) -> Result:
    """Apply one input; after ``ManagerEnded`` nothing has any effect but a refusal."""
    if state.ended:
        if isinstance(event, (PauseManager, ResumeManager, ReportStep, OnboardingAnswered)):
            return state, [Reply(Rejected("the manager session has ended", 409))]
        return state, []
    return _Step(state, now, config).run(event)


class _Step:
    """One application of the rules; collects effects while it replaces the state."""

    def __init__(self, state: ManagerState, now: float, config: ManagerRules) -> None:
        self.s = state
        self.now = now
        self.c = config
        self.fx: list[Effect] = []

    def run(self, event: ManagerInput) -> Result:
        match event:
            case ChildStarted(child_id=cid, name=name):
                if self.s.child(cid) is None:
                    self._set(children=(*self.s.children, Child(cid, name, "starting", self.now)))
                    self.fx.append(Persist())
            case ChildReady(child_id=cid):
                child = self._child_now(cid, "idle")
                self._queue(ready_text(child.name, cid))
            case ChildStatus(child_id=cid, status=status):
                self._child_now(cid, status)
                self._after_idle()  # a child that stopped working may free the nudge
            case ChildActive(child_id=cid):
                if self.s.child(cid) is not None:
                    self._replace_child(cid, last_activity=self.now, stale_reported=False)
                    self._watch(cid)
            case ChildCompleted(child_id=cid, output=output, is_error=is_error):
                child = self._child_now(cid, "idle")
                limit = self.c.manager_child_output_limit
                self._queue(completed_text(child.name, cid, output, is_error, limit))
            case ChildApprovalRequested(child_id=cid, approval=approval):
                child = self._child_now(cid, "awaiting_approval")
                self._queue(approval_text(child.name, cid, approval, self.c.manager_approval_input_limit))
            case ChildFailed(child_id=cid, reason=reason):
                gone = self._drop_child(cid)
                self._queue(failed_text(gone.name if gone else cid, cid, reason))
            case ChildEnded(child_id=cid):
                if self._drop_child(cid) is not None:
                    self._after_idle()
            case ChildStaleDue(child_id=cid):
                self._stale_due(cid)
            case ManagerReady():
                self._ready()
            case OnboardingAnswered(answers=answers):
                self._onboarded(parse_preferences(answers))
            case ManagerTurnStarted():
                self._cancel_batch_and_continue()
                self._set(idle=False, nudged_at=None)
            case ManagerTurnEnded(output_tokens=tokens):
                self._turn_ended(tokens)
            case ManagerInterrupted():
                self._cancel_batch_and_continue()
                self._unwatch_all()
                self._set(fast_streak=0, nudged_at=None)
            case PauseManager(resume_at=resume_at):
                self._pause(resume_at)
            case ResumeManager():
                if not self.s.paused:
                    self.fx.append(Reply(Rejected("the manager is not paused", 409)))
                else:
                    self._resume()
                    self.fx.append(Reply(None))
            case ResumeDue():
                if self.s.paused and self.s.resume_at is not None:
                    self._resume()
            case ReportStep(step=step):
                self._report_step(step)
            case BatchDue():
                self._set(batch_armed=False)
                if self._can_deliver() and self.s.pending:
                    self._deliver_pending()
                else:
                    self._after_idle()
            case ContinueDue():
                self._set(continue_armed=False)
                if self._can_deliver() and not self.s.pending and not self._children_at_work():
                    self._send(CONTINUE_TEXT + reminder(self.s.preferences))
                else:
                    self._after_idle()
            case ManagerEnded(deleted=deleted):
                self._ended(deleted)
        return self.s, self.fx

    # ------------------------------------------------------------ state helpers

    def _set(self, **changes: object) -> None:
        self.s = dataclasses.replace(self.s, **changes)  # type: ignore[arg-type]

    def _replace_child(self, cid: str, **changes: object) -> Child:
        children = tuple(dataclasses.replace(c, **changes) if c.id == cid else c for c in self.s.children)  # type: ignore[arg-type]
        self._set(children=children)
        child = self.s.child(cid)
        assert child is not None
        return child

    def _child_now(self, cid: str, status: str) -> Child:
        """The child with its new status (a child never announced is added: nothing is lost)."""
        if self.s.child(cid) is None:
            self._set(children=(*self.s.children, Child(cid, cid[:12], status, self.now)))
            self.fx.append(Persist())
        child = self._replace_child(cid, status=status, last_activity=self.now, stale_reported=False)
        if status in WATCHED:
            self._watch(cid)
        else:
            self.fx.append(CancelTimer(STALE + cid))
        return child

    def _drop_child(self, cid: str) -> Child | None:
        child = self.s.child(cid)
        if child is not None:
            self._set(children=tuple(c for c in self.s.children if c.id != cid))
            self.fx.append(CancelTimer(STALE + cid))
            self.fx.append(Persist())
        return child

    def _children_at_work(self) -> bool:
        return any(c.status in AT_WORK for c in self.s.children)

    def _can_deliver(self) -> bool:
        s = self.s
        return s.idle and not s.paused and s.onboarding == "done"

    # ------------------------------------------------------------ timers

    def _watch(self, cid: str) -> None:
        child = self.s.child(cid)
        if child is None or not self.s.watching or self.s.paused or child.status not in WATCHED:
            return
        if child.stale_reported:
            return
        delay = max(0.0, child.last_activity + self.c.manager_child_stale - self.now)
        self.fx.append(StartTimer(STALE + cid, delay, ChildStaleDue(cid)))

    def _unwatch_all(self) -> None:
        self._set(watching=False)
        self.fx.extend(CancelTimer(STALE + c.id) for c in self.s.children)

    def _rewatch_all(self) -> None:
        self._set(watching=True)
        for child in self.s.children:
            self._watch(child.id)

    def _cancel_batch_and_continue(self) -> None:
        if self.s.batch_armed:
            self.fx.append(CancelTimer(BATCH))
        if self.s.continue_armed:
            self.fx.append(CancelTimer(CONTINUE))
        self._set(batch_armed=False, continue_armed=False)

    def _after_idle(self) -> None:
        """An idle manager: deliver what is queued (after the batch delay) or arm the nudge."""
        if not self._can_deliver():
            return
        if self.s.pending:
            if self.s.continue_armed:
                self.fx.append(CancelTimer(CONTINUE))
                self._set(continue_armed=False)
            if not self.s.batch_armed:
                self.fx.append(StartTimer(BATCH, self.c.manager_batch_delay, BatchDue()))
                self._set(batch_armed=True)
            return
        if self.s.batch_armed or self.s.continue_armed or self._children_at_work():
            if self.s.continue_armed and self._children_at_work():
                self.fx.append(CancelTimer(CONTINUE))
                self._set(continue_armed=False)
            return
        self.fx.append(StartTimer(CONTINUE, continue_delay(self.s.fast_streak, self.c), ContinueDue()))
        self._set(continue_armed=True)

    # ------------------------------------------------------------ events and turns

    def _queue(self, text: str) -> None:
        pending = (*self.s.pending, text)
        dropped = self.s.dropped
        while len(pending) > self.c.manager_event_queue_limit:
            pending, dropped = pending[1:], dropped + 1
        self._set(pending=pending, dropped=dropped)
        self.fx.append(Persist())
        if self.s.batch_armed:
            return
        self._after_idle()

    def _stale_due(self, cid: str) -> None:
        child = self.s.child(cid)
        if child is None or child.status not in WATCHED or child.stale_reported or self.s.paused:
            return
        idle_for = self.now - child.last_activity
        if idle_for < self.c.manager_child_stale:
            self._watch(cid)  # traffic came after this firing was armed
            return
        self._replace_child(cid, stale_reported=True)
        self._queue(stale_text(child.name, cid, round(idle_for, 1)))

    def _deliver_pending(self) -> None:
        texts = list(self.s.pending)
        if self.s.dropped:
            texts.insert(
                0,
                f"[EVENTS DROPPED] {self.s.dropped} older events gave way to newer ones "
                f"(at most {self.c.manager_event_queue_limit} are held).",
            )
        self._set(pending=(), dropped=0)
        self._send(EVENT_SEPARATOR.join(texts))

    def _send(self, content: str) -> None:
        """Start a manager turn: a user message to its agent, recorded in its history."""
        self._cancel_batch_and_continue()
        message_id = self._next_id()
        self.fx.append(ToAgent(UserMessage(content=content, id=message_id)))
        self.fx.append(RecordMessage(_message(message_id, "user", content, self.now)))
        self.fx.append(Persist())
        self._set(idle=False, nudged_at=self.now)

    def _system(self, content: str) -> None:
        self.fx.append(RecordMessage(_message(self._next_id(), "system", content, self.now)))

    def _next_id(self) -> str:
        self._set(serial=self.s.serial + 1)
        return f"{self.s.manager_id}-m{self.s.serial}"

    def _turn_ended(self, output_tokens: int | None) -> None:
        started = self.s.nudged_at
        fast = (
            started is not None
            and self.now - started < self.c.manager_fast_turn
            and output_tokens is not None
            and output_tokens < self.c.manager_fast_turn_tokens
        )
        self._set(idle=True, nudged_at=None, fast_streak=self.s.fast_streak + 1 if fast else 0)
        if not self.s.watching and not self.s.paused:
            self._rewatch_all()
        self._after_idle()

    def _ready(self) -> None:
        self._set(idle=True)
        if self.s.onboarding != "done":  # a restarted agent ended the question with its turn: ask again
            again = self.s.onboarding == "asked"
            self._set(onboarding="asked")
            self.fx.append(AskUser(onboarding_question(self.s.onboarding_question_id, self.now)))
            if again:
                self._system("The session agent restarted: the manager asks its questions again.")
            else:
                self._system("Manager session ready: answer its questions to configure it before it starts.")
            self.fx.append(Persist())
        else:
            self._after_idle()

    def _onboarded(self, prefs: Preferences) -> None:
        if self.s.onboarding != "asked":
            self.fx.append(Reply(Rejected("the manager is already configured", 409)))
            return
        self._set(onboarding="done", preferences=prefs, idle=True)
        self._system(f"Manager configured: {prefs.describe()}")
        self._send(first_prompt(prefs))
        self.fx.append(Reply(None))

    # ------------------------------------------------------------ commands

    def _pause(self, resume_at: float | None) -> None:
        limit = self.c.manager_max_pause
        if resume_at is not None and not self.now < resume_at <= self.now + limit:
            self.fx.append(
                Reply(
                    Rejected(
                        f"resume_at must lie after now and at most {limit:g} s ahead; "
                        "leave it out to pause until resumed",
                        400,
                    )
                )
            )
            return
        self._cancel_batch_and_continue()
        self._unwatch_all()
        self.fx.append(CancelTimer(RESUME))
        if resume_at is not None:
            self.fx.append(StartTimer(RESUME, resume_at - self.now, ResumeDue()))
        if not self.s.idle and self.s.onboarding == "done":
            self.fx.append(ToAgent(Interrupt()))
        self._set(paused=True, resume_at=resume_at)
        when = f" It resumes by itself in {resume_at - self.now:g} s." if resume_at is not None else ""
        self._system("Manager session paused: auto-continue and event delivery are suspended." + when)
        self.fx.append(Persist())
        self.fx.append(Reply(None))

    def _resume(self) -> None:
        self.fx.append(CancelTimer(RESUME))
        self._set(paused=False, resume_at=None, fast_streak=0)
        self._system("Manager session resumed: auto-continue is active.")
        self._rewatch_all()
        self.fx.append(Persist())
        self._after_idle()

    def _report_step(self, step: str) -> None:
        if step not in STEPS:
            self.fx.append(Reply(Rejected(f"unknown step {step!r}; use one of {', '.join(STEPS)}", 400)))
            return
        self._set(step=step)
        self.fx.append(Persist())
        self.fx.append(Reply(None))

    def _ended(self, deleted: bool) -> None:
        self.fx.extend(_all_timers_cancelled(self.s.children))
        how = "deleted" if deleted else "terminated"
        for child in self.s.children:
            if self.c.manager_orphans_children:
                self.fx.append(TellSession(child.id, ManagerGone(self.s.manager_id)))
            else:
                self.fx.append(EndSession(child.id, deleted, f"its manager {self.s.manager_id} was {how}"))
        self._set(ended=True, batch_armed=False, continue_armed=False, watching=False, idle=False)
        if not deleted:
            self.fx.append(Persist())


def _all_timers_cancelled(children: Iterable[Child]) -> list[Effect]:
    effects: list[Effect] = [CancelTimer(BATCH), CancelTimer(CONTINUE), CancelTimer(RESUME)]
    effects.extend(CancelTimer(STALE + c.id) for c in children)
    return effects


def _message(message_id: str, kind: MessageKind, content: str, now: float) -> ChatMessage:
    return ChatMessage(id=message_id, kind=kind, content=content, timestamp=now)
