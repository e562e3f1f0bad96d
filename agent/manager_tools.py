"""A manager session's tools: Berth's REST API called with the manager token.

The same functions serve both runners: the SDK runner exposes them to Claude
as an in-process MCP server of the Claude Agent SDK (``sdk_server``), and the
built-in runner's scripted manager mode calls them from ``/<tool> {json}``
lines, so a manager runs offline in tests and the demo. The token is read
afresh from its secret file on every call and never appears in a result or
an error message.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SERVER_NAME = "berth"
STATUS_MESSAGES = 5


class ToolError(Exception):
    """A tool call the server refused (its error message) or could not reach."""


@dataclass(frozen=True)
class ManagerApi:
    """Berth's REST API as the manager ``manager_id`` may use it."""

    base_url: str
    manager_id: str
    token: Callable[[], str]
    timeout: float = 30.0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token()}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            try:
                reason = json.loads(err.read() or b"{}").get("error") or err.reason
            except ValueError:
                reason = err.reason
            raise ToolError(f"Berth refused {method} {path}: {err.code} {reason}") from None
        except OSError as exc:
            raise ToolError(f"cannot reach Berth at {self.base_url}: {exc}") from None
        return json.loads(raw) if raw else None


def http_base(server_url: str) -> str:
    """The REST base for the agents' WebSocket URL (ws://host:port -> http://host:port)."""
    if server_url.startswith("wss://"):
        return "https://" + server_url[len("wss://") :].rstrip("/")
    return "http://" + server_url.removeprefix("ws://").rstrip("/")


# ---------------------------------------------------------------- the tools


def create_child(api: ManagerApi, args: dict[str, Any]) -> str:
    body = {"name": args.get("name") or "child"}
    for key, wire in (("repo_url", "repoUrl"), ("branch", "branch"), ("permission_mode", "permissionMode")):
        if args.get(key):
            body[wire] = args[key]
    created = api.call("POST", "/api/sessions", body)
    child = created["session"]["id"]
    if args.get("prompt"):
        api.call("POST", f"/api/sessions/{child}/message", {"content": args["prompt"]})
        return f"Created child {child} ({body['name']}) and sent it its instructions."
    return f"Created child {child} ({body['name']}); you will hear when it is ready."


def message_child(api: ManagerApi, args: dict[str, Any]) -> str:
    api.call("POST", f"/api/sessions/{args['child_id']}/message", {"content": args["content"]})
    return f"Sent to {args['child_id']}."


def answer_child_approval(api: ManagerApi, args: dict[str, Any]) -> str:
    body = {"approvalId": args["approval_id"], "allow": bool(args["allow"])}
    if args.get("message"):
        body["message"] = args["message"]
    api.call("POST", f"/api/sessions/{args['child_id']}/approve", body)
    return f"{'Allowed' if body['allow'] else 'Denied'} approval {args['approval_id']}."


def answer_child_question(api: ManagerApi, args: dict[str, Any]) -> str:
    body = {"questionId": args["question_id"], "answers": dict(args.get("answers") or {})}
    api.call("POST", f"/api/sessions/{args['child_id']}/answer", body)
    return f"Answered question {args['question_id']}."


def child_status(api: ManagerApi, args: dict[str, Any]) -> str:
    view = api.call("GET", f"/api/sessions/{args['child_id']}")
    info = view["session"]
    lines = [f"{info['name']} ({info['id']}): {info['status']}"]
    if info.get("statusReason"):
        lines.append(f"reason: {info['statusReason']}")
    if view.get("pendingApproval"):
        approval = view["pendingApproval"]
        lines.append(f"waiting for approval {approval['id']} of {approval['toolName']}")
    if view.get("pendingQuestion"):
        lines.append(f"waiting for an answer to question {view['pendingQuestion']['id']}")
    for message in view["messages"][-STATUS_MESSAGES:]:
        lines.append(f"[{message['kind']}] {message['content'][:500]}")
    return "\n".join(lines)


def list_children(api: ManagerApi, args: dict[str, Any]) -> str:
    sessions = api.call("GET", "/api/sessions")["sessions"]
    if not sessions:
        return "You have no children."
    return "\n".join(f"{s['id']} {s['name']}: {s['status']}" for s in sessions)


def end_child(api: ManagerApi, args: dict[str, Any]) -> str:
    child = args["child_id"]
    if args.get("delete", True):
        api.call("DELETE", f"/api/sessions/{child}")
        return f"Deleted {child}."
    api.call("POST", f"/api/sessions/{child}/terminate", {"reason": "ended by its manager"})
    return f"Terminated {child}."


def report_step(api: ManagerApi, args: dict[str, Any]) -> str:
    api.call("POST", f"/api/sessions/{api.manager_id}/manager/step", {"step": args["step"]})
    return f"Step: {args['step']}."


def pause(api: ManagerApi, args: dict[str, Any]) -> str:
    seconds = args.get("resume_in_seconds")
    body = {"resumeAt": time.time() + float(seconds)} if seconds else {}
    api.call("POST", f"/api/sessions/{api.manager_id}/manager/pause", body)
    return f"Paused; resuming in {float(seconds):g} s." if seconds else "Paused until resumed."


def _schema(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_S: dict[str, Any] = {"type": "string"}
_CHILD = {"child_id": {"type": "string", "description": "The child session's id"}}

#: name -> (description, JSON schema, function)
TOOLS: dict[str, tuple[str, dict[str, Any], Callable[[ManagerApi, dict[str, Any]], str]]] = {
    "create_child": (
        "Create a child session; with a prompt, send it its first instructions.",
        _schema(["name"], name=_S, prompt=_S, repo_url=_S, branch=_S, permission_mode=_S),
        create_child,
    ),
    "message_child": (
        "Send a child a message.",
        _schema(["child_id", "content"], **_CHILD, content=_S),
        message_child,
    ),
    "answer_child_approval": (
        "Allow or deny a child's pending tool use (its approval id came in the event).",
        _schema(
            ["child_id", "approval_id", "allow"],
            **_CHILD,
            approval_id=_S,
            allow={"type": "boolean"},
            message=_S,
        ),
        answer_child_approval,
    ),
    "answer_child_question": (
        "Answer a child's pending question: answers maps each question text to an answer.",
        _schema(["child_id", "question_id", "answers"], **_CHILD, question_id=_S, answers={"type": "object"}),
        answer_child_question,
    ),
    "child_status": ("A child's status and latest messages.", _schema(["child_id"], **_CHILD), child_status),
    "list_children": ("Your children and their status.", _schema([]), list_children),
    "end_child": (
        "End a child: delete it (default) or only terminate it (delete: false).",
        _schema(["child_id"], **_CHILD, delete={"type": "boolean"}),
        end_child,
    ),
    "report_step": (
        "Report your current step: exploring, triaging, planning, reviewing, fixing, testing, merging, done.",
        _schema(["step"], step=_S),
        report_step,
    ),
    "pause": (
        "Pause your loop (no auto-continue, events kept); optionally resume after some seconds (max 24 h).",
        _schema([], resume_in_seconds={"type": "number"}),
        pause,
    ),
}


def run_tool(api: ManagerApi, name: str, args: dict[str, Any]) -> tuple[str, bool]:
    """(result text, is_error) of one tool call; never raises for a refused call."""
    spec = TOOLS.get(name)
    if spec is None:
        return f"unknown manager tool {name!r}; there are {', '.join(TOOLS)}", True
    missing = [key for key in spec[1]["required"] if key not in args]
    if missing:
        return f"{name} needs {', '.join(missing)}", True
    try:
        return spec[2](api, args), False
    except ToolError as exc:
        return str(exc), True
    except (KeyError, TypeError, ValueError) as exc:
        return f"{name} got unusable input: {exc}", True


def scripted_calls(text: str) -> list[tuple[str, dict[str, Any] | str]]:
    """The ``/<tool> {json}`` lines of a prompt (the built-in runner's scripted manager).

    Each item is (tool, arguments), or (tool, the reason its arguments are unusable).
    """
    calls: list[tuple[str, dict[str, Any] | str]] = []
    for line in text.splitlines():
        name, _, raw = line.strip().removeprefix("/").partition(" ")
        if not line.strip().startswith("/") or name not in TOOLS:
            continue
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            calls.append((name, f"arguments are not JSON: {exc}"))
            continue
        calls.append((name, args if isinstance(args, dict) else "arguments must be a JSON object"))
    return calls


def allowed_tools() -> list[str]:
    """The names Claude Code knows the tools by (allowed without an approval)."""
    return [f"mcp__{SERVER_NAME}__{name}" for name in TOOLS]


def sdk_server(api: ManagerApi) -> Any:
    """The tools as an in-process MCP server of the Claude Agent SDK."""
    from claude_agent_sdk import create_sdk_mcp_server, tool

    def make(name: str, description: str, schema: dict[str, Any]) -> Any:
        async def handler(args: dict[str, Any]) -> dict[str, Any]:
            text, is_error = await asyncio.to_thread(run_tool, api, name, dict(args))
            return {"content": [{"type": "text", "text": text}], "is_error": is_error}

        return tool(name, description, schema)(handler)

    return create_sdk_mcp_server(SERVER_NAME, tools=[make(n, d, s) for n, (d, s, _) in TOOLS.items()])


MANAGER_PROMPT = (
    "You are a Berth manager session: you orchestrate child sessions, each a Claude Code agent in its "
    "own container, with the berth tools (create_child, message_child, answer_child_approval, "
    "answer_child_question, child_status, list_children, end_child, report_step, pause). Events about "
    "your children arrive as user messages; answer approvals promptly; end children you no longer need."
)
