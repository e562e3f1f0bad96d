"""``berth demo``: one real session end to end, shown as it happens, then cleaned up."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.api import Berth, Subscription
from actors.config import BerthConfig
from actors.runtime import LABEL_INSTANCE, EngineUnavailable
from transport import protocol as p
from transport.serve import start_server
from transport.settings import ServerSettings

PROMPTS = ("Hello, Berth! Please say hello back.", "/tool Bash echo hello from the container")


class _Printer:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.streaming = False
        self.status = ""

    def line(self, text: str) -> None:
        if self.streaming:
            print()
            self.streaming = False
        print(f"[{time.monotonic() - self.started:6.2f}s] {text}", flush=True)

    def show(self, event: Any) -> None:
        match event:
            case p.SessionUpdate(session=info) if info.status.value != self.status:
                self.status = info.status.value
                reason = f" ({info.status_reason})" if info.status_reason else ""
                self.line(f"status → {info.status.value}{reason}")
            case p.MessageAdded(message=message):
                self.line(f"{message.kind}: {message.content}")
            case p.StreamTokens(tokens=tokens):
                if not self.streaming:
                    print(f"[{time.monotonic() - self.started:6.2f}s] streaming: ", end="")
                    self.streaming = True
                print("".join(tokens), end="", flush=True)
            case p.ApprovalRequested(approval=approval):
                self.line(f"approval requested for {approval.tool_name} {approval.tool_input}")
            case p.TurnResult(result=result, cost_usd=cost):
                self.line(f"result: {result!r} (cost ${cost:.4f})")


def _preflight(config: BerthConfig) -> str | None:
    try:
        from actors.docker_runtime import connect

        client = connect()
    except EngineUnavailable as exc:
        return str(exc)
    import docker.errors

    try:
        client.images.get(config.image)
    except docker.errors.ImageNotFound:
        return (
            f"The session image '{config.image}' is not built yet: run `bash scripts/build-image.sh` "
            "(it builds the base image first if needed), then `berth demo` again."
        )
    return None


def run_demo(config: BerthConfig) -> int:
    problem = _preflight(config)
    if problem:
        print(f"berth demo: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="berth-demo-") as state:
        config = replace(
            config,
            state_dir=Path(state),
            instance_id=f"demo-{uuid.uuid4().hex[:8]}",
            stop_sessions_on_exit=True,  # a demo leaves nothing running
        )
        if config.claude_dir is None and not os.environ.get("CLAUDE_CODE_OAUTH_TOKEN"):
            # The built-in runner needs no token: do not wait for one that cannot come.
            config = replace(config, token_retry_delay=0.0)
        running = start_server(config, ServerSettings(port=0))
        printer = _Printer()
        try:
            return _conversation(running.berth, printer)
        finally:
            printer.line("shutting down: removing the session container…")
            running.stop()
            _report_leftovers(config, printer)


def _conversation(berth: Berth, printer: _Printer) -> int:
    with berth.subscribe() as events:
        sid = berth.create_session(name="demo")
        printer.line(f"created session {sid}")
        if not _pump(events, printer, lambda e: _status_in(e, sid, ("idle", "error")), timeout=120):
            return 1
        if berth.get_session(sid).info.status != "idle":
            return 1
        for prompt in PROMPTS:
            berth.send_message(sid, prompt)

            def settle(event: Any, sid: str = sid) -> bool:
                if isinstance(event, p.ApprovalRequested):
                    printer.line(f"approving {event.approval.tool_name}")
                    berth.answer_approval(sid, event.approval.id, True)
                return isinstance(event, p.TurnResult) or _status_in(event, sid, ("error",))

            if not _pump(events, printer, settle, timeout=60):
                return 1
        berth.terminate_session(sid, "demo finished")
        _pump(events, printer, lambda e: _status_in(e, sid, ("terminated",)), timeout=30)
        berth.delete_session(sid)
    return 0


def _status_in(event: Any, sid: str, statuses: tuple[str, ...]) -> bool:
    return isinstance(event, p.SessionUpdate) and event.session_id == sid and event.session.status in statuses


def _pump(events: Subscription, printer: _Printer, done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = events.get(deadline - time.monotonic())
        except TimeoutError:
            break
        printer.show(event)
        if done(event):
            return True
    printer.line(f"gave up waiting after {timeout:g} s")
    return False


def _report_leftovers(config: BerthConfig, printer: _Printer) -> None:
    from actors.docker_runtime import connect

    left = connect().api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={config.instance_id}"})
    printer.line("clean: no container left behind" if not left else f"LEFT BEHIND: {len(left)} containers")
