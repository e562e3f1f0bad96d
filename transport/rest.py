"""The REST API for sessions: JSON in and out, ``{"error": ...}`` on failure.

Request bodies are typed msgspec structs, so a malformed body is answered
with 400 and the validation message; refused commands keep the status code
the actor chose (404 unknown, 409 wrong state, 429 limit).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from actors.api import Berth
from actors.messages import SessionView
from transport.http import error_response, json_response

T = TypeVar("T")


class _Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class CreateBody(_Body):
    name: str = "session"
    repo_url: str | None = None
    branch: str | None = None
    permission_mode: str = "normal"
    model: str | None = None
    runner: str | None = None
    manager: bool = False


class MessageBody(_Body):
    content: str


class ApproveBody(_Body):
    approval_id: str
    allow: bool
    message: str | None = None


class AnswerBody(_Body):
    question_id: str
    answers: dict[str, str]


class SettingsBody(_Body):
    name: str | None = None
    permission_mode: str | None = None


class ModelBody(_Body):
    model: str | None


class TerminateBody(_Body):
    reason: str = "terminated by user"


class StepBody(_Body):
    step: str


class PauseBody(_Body):
    #: Unix time of the automatic resume (within 24 h); none: until resumed.
    resume_at: float | None = None


ROUTES = Map(
    [
        Rule("/api/health", endpoint="health", methods=["GET"]),
        Rule("/api/sessions", endpoint="list", methods=["GET"]),
        Rule("/api/sessions", endpoint="create", methods=["POST"]),
        Rule("/api/sessions/<sid>", endpoint="get", methods=["GET"]),
        Rule("/api/sessions/<sid>", endpoint="delete", methods=["DELETE"]),
        Rule("/api/sessions/<sid>/message", endpoint="message", methods=["POST"]),
        Rule("/api/sessions/<sid>/approve", endpoint="approve", methods=["POST"]),
        Rule("/api/sessions/<sid>/answer", endpoint="answer", methods=["POST"]),
        Rule("/api/sessions/<sid>/interrupt", endpoint="interrupt", methods=["POST"]),
        Rule("/api/sessions/<sid>/settings", endpoint="settings", methods=["PATCH", "POST"]),
        Rule("/api/sessions/<sid>/model", endpoint="model", methods=["POST"]),
        Rule("/api/sessions/<sid>/models", endpoint="models", methods=["POST"]),
        Rule("/api/sessions/<sid>/terminate", endpoint="terminate", methods=["POST"]),
        Rule("/api/sessions/<sid>/manager/step", endpoint="manager_step", methods=["POST"]),
        Rule("/api/sessions/<sid>/manager/pause", endpoint="manager_pause", methods=["POST"]),
        Rule("/api/sessions/<sid>/manager/resume", endpoint="manager_resume", methods=["POST"]),
        Rule("/ws", endpoint="client_ws", websocket=True),
        Rule("/agent/<sid>", endpoint="agent_ws", websocket=True),
        Rule("/agent/pool/<sid>", endpoint="pool_agent_ws", websocket=True),
    ]
)


def view_body(view: SessionView) -> dict[str, Any]:
    return {
        "session": view.info,
        "messages": list(view.history),
        "pendingApproval": view.pending_approval,
        "pendingQuestion": view.pending_question,
        "seq": view.seq,
    }


def _body(request: Request, kind: type[T]) -> T:
    data = request.get_data() or b"{}"
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise BadBody(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise BadBody("request body is not valid JSON") from None


class BadBody(ValueError):
    pass


def handle(
    berth: Berth, request: Request, endpoint: str, sid: str | None, manager: str | None = None
) -> Response:
    """One REST call; BerthError and BadBody are turned into responses by the caller.

    ``manager``: the call was made with that manager's token (transport.scopes
    already checked it may); it lists only its children and creates only children.
    """
    match endpoint:
        case "health":
            return json_response({"ok": True})
        case "list":
            listed = berth.list_sessions() if manager is None else berth.children_of(manager)
            return json_response({"sessions": listed})
        case "create":
            body = _body(request, CreateBody)
            if manager is not None and body.manager:
                raise BadBody("a manager's child cannot itself be a manager")
            new = berth.create_session(**msgspec.structs.asdict(body), managed_by=manager)
            return json_response(view_body(berth.get_session(new)), 201)
    assert sid is not None
    match endpoint:
        case "get":
            return json_response(view_body(berth.get_session(sid)))
        case "delete":
            berth.delete_session(sid)
            return Response(status=204)
        case "message":
            berth.send_message(sid, _body(request, MessageBody).content)
        case "approve":
            approve = _body(request, ApproveBody)
            berth.answer_approval(sid, approve.approval_id, approve.allow, approve.message)
        case "answer":
            answer = _body(request, AnswerBody)
            berth.answer_question(sid, answer.question_id, answer.answers)
        case "interrupt":
            berth.interrupt(sid)
        case "settings":
            settings = _body(request, SettingsBody)
            berth.update_settings(sid, name=settings.name, permission_mode=settings.permission_mode)
        case "model":
            berth.set_model(sid, _body(request, ModelBody).model)
        case "models":
            berth.request_models(sid)
        case "terminate":
            berth.terminate_session(sid, _body(request, TerminateBody).reason)
        case "manager_step":
            berth.report_step(sid, _body(request, StepBody).step)
        case "manager_pause":
            berth.pause_manager(sid, _body(request, PauseBody).resume_at)
        case "manager_resume":
            berth.resume_manager(sid)
        case _:
            return error_response(404, "no such endpoint")
    return json_response({"ok": True}, 202)
