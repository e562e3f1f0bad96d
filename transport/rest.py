"""The REST API for sessions: JSON in and out, ``{"error": ...}`` on failure.

Request bodies are typed msgspec structs, so a malformed body is answered
with 400 and the validation message; refused commands keep the status code
the actor chose (404 unknown, 409 wrong state, 429 limit). A body larger than
``Limits.request_bytes`` is never read (413), and every field is checked
against its limit before the call reaches a session (400 naming the field).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from actors.api import Berth
from actors.messages import SessionView
from transport import validate
from transport.http import error_response, json_response
from transport.limits import InputRefused, Limits, check_text, too_large

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


def _body(request: Request, kind: type[T], limits: Limits) -> T:
    """The decoded body; read only up to the limit (Content-Length is checked first)."""
    # One byte over the limit: a chunked body (no Content-Length) is cut
    # there rather than refused, so reading that byte is how it shows.
    request.max_content_length = limits.request_bytes + 1
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        data = None
    if data is None or len(data) > limits.request_bytes:
        raise BodyTooLarge(too_large("the request body", limits.request_bytes))
    data = data or b"{}"
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise BadBody(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise BadBody("request body is not valid JSON") from None


class BadBody(ValueError):
    """Answered with 400."""


class BodyTooLarge(ValueError):
    """Answered with 413; the connection is closed (the rest of the body is unread)."""


def too_large_response(exc: BodyTooLarge) -> Response:
    response = error_response(413, str(exc))
    response.headers["Connection"] = "close"
    return response


def handle(
    berth: Berth,
    request: Request,
    endpoint: str,
    sid: str | None,
    limits: Limits,
    manager: str | None = None,
) -> Response:
    """One REST call; BerthError, BadBody and BodyTooLarge become responses in the caller.

    ``manager``: the call was made with that manager's token (transport.scopes
    already checked it may); it lists only its children and creates only children.
    """
    try:
        return _handle(berth, request, endpoint, sid, limits, manager)
    except InputRefused as exc:
        raise BadBody(str(exc)) from None


def _handle(
    berth: Berth, request: Request, endpoint: str, sid: str | None, limits: Limits, manager: str | None
) -> Response:
    match endpoint:
        case "health":
            return json_response({"ok": True})
        case "list":
            ended = request.args.get("ended", "").lower() in ("1", "true", "yes")
            listed = (
                berth.list_sessions(include_ended=ended) if manager is None else berth.children_of(manager)
            )
            return json_response({"sessions": listed})
        case "create":
            body = _body(request, CreateBody, limits)
            if manager is not None and body.manager:
                raise BadBody("a manager's child cannot itself be a manager")
            fields = msgspec.structs.asdict(body)
            validate.check_create(
                limits,
                name=body.name,
                repo_url=body.repo_url,
                branch=body.branch,
                permission_mode=body.permission_mode,
                model=body.model,
                runner=body.runner,
            )
            new = berth.create_session(**fields, managed_by=manager)
            return json_response(view_body(berth.get_session(new)), 201)
    assert sid is not None
    validate.check_session_id(sid, limits)
    match endpoint:
        case "get":
            return json_response(view_body(berth.get_session(sid)))
        case "delete":
            berth.delete_session(sid)
            return Response(status=204)
        case "message":
            content = _body(request, MessageBody, limits).content
            check_text("content", content, limits.prompt_chars)
            berth.send_message(sid, content)
        case "approve":
            approve = _body(request, ApproveBody, limits)
            check_text("approvalId", approve.approval_id, limits.id_chars)
            check_text("message", approve.message, limits.answer_chars)
            berth.answer_approval(sid, approve.approval_id, approve.allow, approve.message)
        case "answer":
            answer = _body(request, AnswerBody, limits)
            check_text("questionId", answer.question_id, limits.id_chars)
            validate.check_answers(answer.answers, limits)
            berth.answer_question(sid, answer.question_id, answer.answers)
        case "interrupt":
            berth.interrupt(sid)
        case "settings":
            settings = _body(request, SettingsBody, limits)
            validate.check_settings(limits, settings.name, settings.permission_mode)
            berth.update_settings(sid, name=settings.name, permission_mode=settings.permission_mode)
        case "model":
            model = _body(request, ModelBody, limits).model
            check_text("model", model, limits.model_chars)
            berth.set_model(sid, model)
        case "models":
            berth.request_models(sid)
        case "terminate":
            reason = _body(request, TerminateBody, limits).reason
            check_text("reason", reason, limits.reason_chars)
            berth.terminate_session(sid, reason)
        case "manager_step":
            step = _body(request, StepBody, limits).step
            check_text("step", step, limits.answer_chars)
            berth.report_step(sid, step)
        case "manager_pause":
            berth.pause_manager(sid, _body(request, PauseBody, limits).resume_at)
        case "manager_resume":
            berth.resume_manager(sid)
        case _:
            return error_response(404, "no such endpoint")
    return json_response({"ok": True}, 202)
