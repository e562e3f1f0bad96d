"""The ``berth`` sub-commands that drive sessions on a running server.

Each takes the parsed arguments and a ``Client`` and returns the exit code;
``Refused`` (exit 1) and ``Unreachable`` (exit 3) propagate to ``cli.main``.
A session is named by its id, a unique prefix of it, or its exact name.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from transport.cli_attach import LiveView
from transport.cli_client import Client, Refused
from transport.cli_view import FINAL, EventView, Style, dump_json, session_table
from transport.settings import ClientSettings

Command = Callable[[argparse.Namespace, Client, ClientSettings], int]


def add_parsers(commands: Any, common: Callable[..., argparse.ArgumentParser]) -> None:
    """Register every client sub-command; ``common`` adds the shared options."""
    p = common(commands.add_parser("ls", allow_abbrev=False, help="list sessions"))
    p.add_argument("-a", "--all", action="store_true", help="include ended sessions")
    p.add_argument("--json", action="store_true")
    p = common(commands.add_parser("new", allow_abbrev=False, help="create a session"), skip=("--runner",))
    p.add_argument("name", nargs="?", default="session")
    p.add_argument("--repo", dest="repo_url", help="git repository to clone into the workspace")
    p.add_argument("--branch")
    p.add_argument("--model")
    p.add_argument("--permission-mode", choices=["normal", "auto_edits", "dangerous", "plan"])
    p.add_argument(
        "--runner", dest="session_runner", choices=["builtin", "sdk"], help="this session's runner"
    )
    p.add_argument("--attach", action="store_true", help="attach once it is ready")
    p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting until ready")
    p.add_argument("--json", action="store_true")
    p = common(
        commands.add_parser(
            "attach", allow_abbrev=False, help="the live session: stream, approve, answer, type"
        )
    )
    p.add_argument("session")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines")
    p = common(commands.add_parser("send", allow_abbrev=False, help="send a message"))
    p.add_argument("session")
    p.add_argument("text", nargs="+")
    p.add_argument("--wait", action="store_true", help="stream the reply until the turn is over")
    p.add_argument("--json", action="store_true")
    for verb in ("approve", "deny"):
        p = common(commands.add_parser(verb, allow_abbrev=False, help=f"{verb} the pending tool call"))
        p.add_argument("session")
        p.add_argument("--message", help="a note for the agent")
    p = common(commands.add_parser("answer", allow_abbrev=False, help="answer the pending question"))
    p.add_argument("session")
    p.add_argument("answers", nargs="*", help="one per question: an option number or text")
    p = common(commands.add_parser("interrupt", allow_abbrev=False, help="interrupt the running turn"))
    p.add_argument("session")
    p = common(commands.add_parser("logs", allow_abbrev=False, help="the session's history"))
    p.add_argument("session")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--json", action="store_true")
    p = common(
        commands.add_parser(
            "stop", allow_abbrev=False, help="terminate a session (it stays readable until evicted)"
        )
    )
    p.add_argument("session")
    p.add_argument("--reason", default="stopped with berth stop")
    p = common(commands.add_parser("rm", allow_abbrev=False, help="delete a session and its container"))
    p.add_argument("session")


def resolve(client: Client, given: str) -> str:
    """The id of the session ``given`` names (id, unique id prefix, or name)."""
    sessions = client.sessions()
    if any(s["id"] == given for s in sessions):
        return given
    matches = [s for s in sessions if s["id"].startswith(given)] or [
        s for s in sessions if s["name"] == given
    ]
    if len(matches) == 1:
        return str(matches[0]["id"])
    if not matches:
        raise Refused(f"no session {given!r} (see `berth ls --all`)")
    raise Refused(f"{given!r} names {len(matches)} sessions; give more of the id")


def ls(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    sessions = client.sessions(ended=args.all)
    if not args.all:
        sessions = [s for s in sessions if s["status"] not in FINAL]
    sessions.sort(key=lambda s: s.get("createdAt", 0))
    if args.json:
        dump_json(sessions, sys.stdout)
    else:
        session_table(sessions, sys.stdout)
    return 0


def new(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    body = {"name": args.name}
    for key, value in (
        ("repoUrl", args.repo_url),
        ("branch", args.branch),
        ("model", args.model),
        ("permissionMode", args.permission_mode),
        ("runner", args.session_runner),
    ):
        if value is not None:
            body[key] = value
    created = client.call("POST", "/api/sessions", body)
    sid = created["session"]["id"]
    code = 0
    if not args.no_wait and created["session"]["status"] == "starting":
        code = _wait_ready(client, sid, created["seq"], settings)
    if args.json:
        dump_json(client.session(sid), sys.stdout)
    else:
        print(sid, flush=True)
    if code == 0 and args.attach:
        return _attach(client, sid, settings, json_mode=False)
    return code


def _wait_ready(client: Client, sid: str, seq: int, settings: ClientSettings) -> int:
    """Progress on stderr while the container starts; 0 once the session is idle."""
    style, started = Style(sys.stderr), time.monotonic()
    print(style.dim("· starting the session's container…"), file=sys.stderr, flush=True)

    def ready(frame: dict[str, Any], view: EventView) -> int | None:
        if view.status == "idle":
            print(style.dim(f"· ready in {time.monotonic() - started:.1f} s"), file=sys.stderr, flush=True)
            return 0
        return 1 if view.status in FINAL else None

    return LiveView(client, sid, settings, out=sys.stderr, stop_when=ready).run(since=seq)


def attach(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    return _attach(client, resolve(client, args.session), settings, args.json)


def _attach(client: Client, sid: str, settings: ClientSettings, json_mode: bool) -> int:
    banner = ""
    if sys.stdout.isatty() and not json_mode:
        keys = "y/n approve, digits answer, type + Enter to send, Ctrl-C interrupts, Ctrl-D detaches"
        banner = f"attached to {sid} — {keys}"
    return LiveView(client, sid, settings, json_mode=json_mode).run(keys=True, banner=banner)


def send(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    sid = resolve(client, args.session)
    content = " ".join(args.text)
    if not args.wait:
        client.call("POST", f"/api/sessions/{sid}/message", {"content": content})
        return 0
    seq = client.session(sid)["seq"]

    def turn_over(frame: dict[str, Any], view: EventView) -> int | None:
        return 0 if frame.get("type") == "result" else None

    view = LiveView(client, sid, settings, json_mode=args.json, stop_when=turn_over)
    view.then({"type": "send_prompt", "sessionId": sid, "content": content})
    return view.run(since=seq, history=False)


def approve(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    sid = resolve(client, args.session)
    pending = client.session(sid).get("pendingApproval")
    if not pending:
        raise Refused(f"session {sid} has no tool call waiting for approval")
    allow = args.command == "approve"
    body = {
        "approvalId": pending["id"],
        "allow": allow,
        **({"message": args.message} if args.message else {}),
    }
    client.call("POST", f"/api/sessions/{sid}/approve", body)
    print(f"{'allowed' if allow else 'denied'} {pending['toolName']}")
    return 0


def answer(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    sid = resolve(client, args.session)
    pending = client.session(sid).get("pendingQuestion")
    if not pending:
        raise Refused(f"session {sid} has no question waiting for an answer")
    items = pending["questions"]
    given = list(args.answers)
    if not given and sys.stdin.isatty():
        for item in items:
            options = " ".join(f"[{n}] {o['label']}" for n, o in enumerate(item.get("options", []), 1))
            given.append(input(f"{item['question']} {options}: "))
    if len(given) != len(items):
        print(f"berth: the question has {len(items)} part(s); give one answer each", file=sys.stderr)
        return 2
    answers = {}
    for item, text in zip(items, given, strict=True):
        options = item.get("options", [])
        if text.isdigit() and 1 <= int(text) <= len(options):
            text = options[int(text) - 1]["label"]
        answers[item["question"]] = text
    client.call("POST", f"/api/sessions/{sid}/answer", {"questionId": pending["id"], "answers": answers})
    return 0


def interrupt(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    client.call("POST", f"/api/sessions/{resolve(client, args.session)}/interrupt")
    return 0


def logs(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    sid = resolve(client, args.session)
    if args.follow:
        return LiveView(client, sid, settings, json_mode=args.json).run()
    body = client.session(sid)
    if args.json:
        dump_json(body["messages"], sys.stdout)
        return 0
    view = EventView(sys.stdout)
    view.show({"type": "snapshot", **body, "history": body["messages"]})
    return 0


def stop(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    client.call("POST", f"/api/sessions/{resolve(client, args.session)}/terminate", {"reason": args.reason})
    return 0


def rm(args: argparse.Namespace, client: Client, settings: ClientSettings) -> int:
    client.call("DELETE", f"/api/sessions/{resolve(client, args.session)}")
    return 0


COMMANDS: dict[str, Command] = {
    "ls": ls,
    "new": new,
    "attach": attach,
    "send": send,
    "approve": approve,
    "deny": approve,
    "answer": answer,
    "interrupt": interrupt,
    "logs": logs,
    "stop": stop,
    "rm": rm,
}
