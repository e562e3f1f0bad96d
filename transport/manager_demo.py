"""``berth demo --manager``: a manager session orchestrating two children, offline.

The manager runs the built-in runner's scripted mode: its prompt's
``/create_child`` lines call the same tool the SDK runner gives Claude. One
child says hello, the other crashes; the manager hears both, and deleting it
ends the survivor. Everything is cleaned up at the end.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.api import Berth
from actors.config import BerthConfig
from actors.manager_onboarding import EXPLORE_Q, FOCUS_Q, PLAN_Q, TASK_Q
from transport import protocol as p
from transport.demo import _preflight, _Printer, _pump, _report_leftovers, _status_in
from transport.serve import start_server
from transport.settings import ServerSettings

SCRIPT = "\n".join(
    "/create_child " + json.dumps(child)
    for child in (
        {"name": "greeter", "prompt": "hello from your manager"},
        {"name": "crasher", "prompt": "/crash"},
    )
)
ANSWERS = {
    FOCUS_Q: "Focused task",
    TASK_Q: "start two children and see how they do",
    EXPLORE_Q: "Skip exploration",
    PLAN_Q: "Auto-proceed",
}


def run_manager_demo(config: BerthConfig) -> int:
    problem = _preflight(config)
    if problem:
        print(f"berth demo: {problem}")
        return 2
    with tempfile.TemporaryDirectory(prefix="berth-demo-") as state:
        config = replace(
            config,
            state_dir=Path(state),
            instance_id=f"demo-{uuid.uuid4().hex[:8]}",
            agent_runner="builtin",
            stop_sessions_on_exit=True,  # a demo leaves nothing running
            manager_continue_delay=max(config.manager_continue_delay, 30.0),  # no nudge mid-demo
        )
        running = start_server(config, ServerSettings(port=0))
        printer = _Printer()
        try:
            return _orchestration(running.berth, printer)
        finally:
            printer.line("shutting down: removing every container…")
            running.stop()
            _report_leftovers(config, printer)


def _orchestration(berth: Berth, printer: _Printer) -> int:
    with berth.subscribe() as events:
        boss = berth.create_manager(name="demo manager")
        printer.line(f"created manager session {boss}")
        if not _pump(events, printer, lambda e: _status_in(e, boss, ("awaiting_answer", "error")), 120):
            return 1
        question = berth.get_session(boss).pending_question
        if question is None:
            return 1
        printer.line(f"answering its onboarding question: {ANSWERS[TASK_Q]!r}")
        berth.answer_question(boss, question.id, ANSWERS)
        if not _pump(events, printer, lambda e: _result_of(e, boss), 60):
            return 1
        printer.line("telling the manager to create two children")
        berth.send_message(boss, SCRIPT)
        heard: set[str] = set()

        def both_heard(event: Any) -> bool:
            if (
                isinstance(event, p.MessageAdded)
                and event.session_id == boss
                and event.message.kind == "user"
            ):
                heard.update(
                    tag for tag in ("COMPLETED", "ERROR") if f"[CHILD SESSION {tag}]" in event.message.content
                )
            return heard == {"COMPLETED", "ERROR"}

        if not _pump(events, printer, both_heard, 120):
            return 1
        manager = berth.get_session(boss).info.manager
        children = ", ".join(f"{c.name} ({c.status.value})" for c in manager.children) if manager else "?"
        printer.line(f"the manager's children now: {children}")
        berth.delete_session(boss)
        printer.line("deleted the manager: its children go with it")
        deadline = time.monotonic() + 30
        while _live(berth) and time.monotonic() < deadline:
            try:
                printer.show(events.get(0.1))
            except TimeoutError:
                continue
        if _live(berth):
            printer.line(f"still live after 30 s: {', '.join(_live(berth))}")
            return 1
        printer.line("no live session left (the crashed child stays listed, in error, until evicted)")
    return 0


def _live(berth: Berth) -> list[str]:
    return [info.name for info in berth.list_sessions() if not info.status.is_final]


def _result_of(event: Any, sid: str) -> bool:
    return isinstance(event, p.TurnResult) and event.session_id == sid
