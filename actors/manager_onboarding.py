"""A manager's onboarding: the question it asks its user first, and how the
answers shape its first prompt and its later nudges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from transport.protocol import PendingQuestion, QuestionItem, QuestionOption

Focus = Literal["bugs", "enhancements", "both"]

FOCUS_Q = "What should the manager focus on?"
TASK_Q = "Describe the task for the manager to implement (or leave empty):"
EXPLORE_Q = "Should the manager explore the codebase first?"
PLAN_Q = "Should the manager wait for your approval on plans?"


@dataclass(frozen=True)
class Preferences:
    focus: Focus = "both"
    task: str | None = None
    explore_first: bool = True
    plan_approval: bool = False

    def describe(self) -> str:
        parts = [f"focus: {self.focus}"]
        if self.task:
            parts.append(f'task: "{self.task}"')
        parts.append("explore first" if self.explore_first else "skip exploration")
        parts.append("plans need your approval" if self.plan_approval else "plans auto-proceed")
        return ", ".join(parts)


def onboarding_question(question_id: str, now: float) -> PendingQuestion:
    items = [
        QuestionItem(
            question=FOCUS_Q,
            header="Focus",
            options=[
                QuestionOption(label="Bugs", description="Find and fix bugs"),
                QuestionOption(label="Enhancements", description="Improve and extend"),
                QuestionOption(label="Both", description="Bugs and enhancements"),
                QuestionOption(label="Focused task", description="One task, described next"),
            ],
        ),
        QuestionItem(question=TASK_Q, header="Task"),
        QuestionItem(
            question=EXPLORE_Q,
            header="Explore",
            options=[QuestionOption(label="Explore"), QuestionOption(label="Skip exploration")],
        ),
        QuestionItem(
            question=PLAN_Q,
            header="Plans",
            options=[QuestionOption(label="Require approval"), QuestionOption(label="Auto-proceed")],
        ),
    ]
    return PendingQuestion(id=question_id, questions=items, timestamp=now)


def parse_preferences(answers: Mapping[str, str]) -> Preferences:
    """Answers keyed by question text (missing ones take the defaults).

    A non-empty task makes it a focused task, whatever the focus answer says
    ("Focused task" with no description is just "both"), and a focused task
    skips exploration: the user already said what to do.
    """
    focus_answer = answers.get(FOCUS_Q, "").strip().lower()
    task = answers.get(TASK_Q, "").strip() or None
    focus: Focus = "both"
    if "bug" in focus_answer:
        focus = "bugs"
    elif "enhancement" in focus_answer:
        focus = "enhancements"
    explore = "skip" not in answers.get(EXPLORE_Q, "").lower() and task is None
    plan_approval = "require" in answers.get(PLAN_Q, "").lower()
    return Preferences(focus=focus, task=task, explore_first=explore, plan_approval=plan_approval)


def first_prompt(prefs: Preferences) -> str:
    if prefs.task:
        start = (
            f"You are a Berth manager session. Your task: {prefs.task}\n"
            "Go straight to planning: break the task into pieces a child session can do alone, "
            "then create the children (create_child) and give them their instructions."
        )
    elif not prefs.explore_first:
        start = (
            f"You are a Berth manager session. Focus on {_focus_words(prefs.focus)}. "
            "Skip exploration: triage what is known, pick the most valuable items and "
            "create child sessions (create_child) to work on them."
        )
    else:
        start = (
            f"You are a Berth manager session. Focus on {_focus_words(prefs.focus)}. "
            "Start by exploring: create a child session (create_child) to survey the codebase "
            "and report what needs doing."
        )
    plan = (
        " Before children start on a plan, present it to the user and wait for approval."
        if prefs.plan_approval
        else " Proceed with your plans without waiting for approval."
    )
    tools = (
        " Report each step with report_step. Events about your children (ready, completed, "
        "error, stale, approval requests) arrive as messages; answer approvals with "
        "answer_child_approval and end children you no longer need with end_child."
    )
    return start + plan + tools


def reminder(prefs: Preferences | None) -> str:
    """What the continue nudge reminds the manager of."""
    if prefs is None:
        return ""
    if prefs.task:
        return f' Remember: you are implementing a focused task: "{prefs.task}".'
    return f" Remember: focus on {_focus_words(prefs.focus)}."


def _focus_words(focus: Focus) -> str:
    return {"bugs": "bugs only", "enhancements": "enhancements only", "both": "bugs and enhancements"}[focus]
