"""Event endpoints: list (paginated), send, and stream (SSE with ``Last-Event-ID``).

Sent events become Berth commands told to the session (``Berth.tell_command``);
the reply arrives on the session's thread right after the session applied
the command, and that is where an accepted interrupt or confirmation is
recorded in the view, in its place among the session's events.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from werkzeug.wrappers import Request, Response

from actors import messages as m
from actors.api import ASK_TIMEOUT, BerthError
from actors.outcome import Rejected
from transport.limits import check_text
from transport.protocol import PERMISSION_MODES
from transport.v1 import requests as rq
from transport.v1.errors import ApiError
from transport.v1.ids import berth_session_id, event_key, page_position, page_token
from transport.v1.mapping import Body, timestamp
from transport.v1.streams import EventStreamBody
from transport.validate import check_answers

if TYPE_CHECKING:
    from transport.v1.app import ApiState

_encoder = msgspec.json.Encoder()
#: Berth's own sendable events (documented in docs/sessions-api.md).
SETTINGS = ("berth.set_model", "berth.set_permission_mode", "berth.list_models")
NOT_SUPPORTED = {
    "user.custom_tool_result": "Berth agents have no custom tools",
    "user.tool_result": "Berth agents run their tools themselves",
    "user.define_outcome": "Berth has no outcome evaluation",
    "system.message": "Berth cannot append system turns to a running agent",
}


def list_events(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    state.berth.lookup(sid)
    limit = rq.limit_arg(request, 100, 1000)
    order = rq.order_arg(request, "asc")
    types = set(rq.list_arg(request, "types"))
    bounds = rq.time_bounds(request)

    def keep(body: Body) -> bool:
        return (not types or body["type"] in types) and (not bounds or rq.within(_unix(body), bounds))

    keys, events = state.view.events(sid, keep)
    page = request.args.get("page")
    after: int | None = None
    if page is not None:
        position = page_position(page) or ""
        if not position.isdigit():
            raise ApiError(400, f"page: {page!r} is not a page token from this server")
        after = int(position)
    next_page = None
    if order == "asc":
        first = bisect.bisect_right(keys, after) if after is not None else 0
        chosen = events[first : first + limit]
        if first + limit < len(events):
            next_page = page_token(str(keys[first + limit - 1]))
    else:
        end = bisect.bisect_left(keys, after) if after is not None else len(keys)
        chosen = events[max(0, end - limit) : end][::-1]
        if end - limit > 0:
            next_page = page_token(str(keys[end - limit]))
    return Response(_encoder.encode({"data": chosen, "next_page": next_page}), mimetype="application/json")


def send(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    state.berth.lookup(sid)
    events = rq.json_body(request).get("events")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "events: a non-empty list of events is required")
    actions = [_action(state, sid, event, f"events[{i}].") for i, event in enumerate(events)]
    sent = [action() for action in actions]
    return Response(_encoder.encode({"data": sent}), mimetype="application/json")


def stream(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    state.berth.lookup(sid)
    after = None
    last = request.headers.get("Last-Event-ID")
    if last:
        after = event_key(last)
        if after is None:
            raise ApiError(400, f"Last-Event-ID: {last!r} is not an event id of this server (sevt_…)")
    deltas = set(rq.list_arg(request, "event_deltas"))
    unknown = deltas - {"agent.message", "agent.thinking"}
    if unknown:
        raise ApiError(400, f"event_deltas: 'agent.message' or 'agent.thinking' (got {sorted(unknown)})")
    if not state.slots.take():
        raise ApiError(
            429,
            f"{state.slots.limit} event streams are open (BerthConfig.sessions_api_max_streams); "
            "close one or raise the limit",
        )
    queue = state.view.subscribe(sid, after, "agent.message" in deltas)

    def gone() -> Body | None:
        try:
            state.berth.lookup(sid)
        except BerthError:
            return state.view.deleted_event(sid, timestamp(time.time()))
        return None

    body = EventStreamBody(state.view, queue, state.slots, state.config.sessions_api_keepalive, gone)
    response = Response(body, mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    return response


# ---------------------------------------------------------------- sending


def _action(state: ApiState, sid: str, event: Any, where: str) -> Callable[[], Body]:
    """Check one event now (so a bad batch changes nothing); the returned call applies it."""
    if not isinstance(event, dict):
        raise ApiError(400, f"{where[:-1]}: an event object is required")
    _within_limits(state, event, where)
    kind = event.get("type")
    view = state.view
    if kind == "user.message":
        text = rq.text_content(event.get("content"), where)
        return lambda: _tell(
            state, sid, m.SendUserMessage(text), lambda: view.latest(sid, "user.message") or {}
        )
    if kind == "user.interrupt":
        if event.get("session_thread_id"):
            raise ApiError(400, f"{where}session_thread_id: Berth sessions have one thread")
        return lambda: _tell(
            state, sid, m.InterruptTurn(), lambda: view.record(sid, {"type": "user.interrupt"})
        )
    if kind == "user.tool_confirmation":
        return _confirmation(state, sid, event, where)
    if kind == "berth.question_answer":
        return _answer(state, sid, event, where)
    if kind in SETTINGS:
        return _setting(state, sid, event, str(kind), where)
    why = NOT_SUPPORTED.get(str(kind))
    if why:
        raise ApiError(400, f"{where}type: {kind!r} is not supported by Berth: {why}")
    raise ApiError(
        400,
        f"{where}type: unknown event type {kind!r}; send user.message, user.interrupt, "
        f"user.tool_confirmation, berth.question_answer or {', '.join(SETTINGS)}",
    )


def _within_limits(state: ApiState, event: Body, where: str) -> None:
    """The limits of ``transport.limits`` on what an event carries (InputRefused: 400)."""
    limits = state.limits
    if limits is None:
        return
    if event.get("type") == "user.message":
        check_text(f"{where}content", rq.text_content(event.get("content"), where), limits.prompt_chars)
    for name, limit in (("deny_message", limits.answer_chars), ("model", limits.model_chars)):
        value = event.get(name)
        if isinstance(value, str):
            check_text(f"{where}{name}", value, limit)
    answers = event.get("answers")
    if isinstance(answers, dict) and all(isinstance(v, str) for v in answers.values()):
        check_answers(answers, limits)


def _confirmation(state: ApiState, sid: str, event: Body, where: str) -> Callable[[], Body]:
    use_id = rq.required_str(event, "tool_use_id", where)
    result = event.get("result")
    if result not in ("allow", "deny"):
        raise ApiError(400, f"{where}result: 'allow' or 'deny' (got {result!r})")
    deny = rq.optional_str(event, "deny_message")
    if deny is not None and result == "allow":
        raise ApiError(400, f"{where}deny_message: only allowed when result is 'deny'")
    blocker = state.view.blocker(sid, use_id)
    if blocker is None or blocker.kind != "approval":
        raise ApiError(400, f"{where}tool_use_id: {use_id!r} is not a tool use awaiting confirmation")
    echo: Body = {"type": "user.tool_confirmation", "tool_use_id": use_id, "result": result}
    if deny is not None:
        echo["deny_message"] = deny

    def recorded() -> Body:
        state.view.resolve(sid, use_id)
        return state.view.record(sid, echo)

    command = m.AnswerApproval(blocker.berth_id, result == "allow", deny)
    return lambda: _tell(state, sid, command, recorded)


def _answer(state: ApiState, sid: str, event: Body, where: str) -> Callable[[], Body]:
    question = rq.required_str(event, "question_id", where)
    answers = event.get("answers")
    if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
        raise ApiError(400, f"{where}answers: an object of question text -> answer is required")
    blocker = state.view.blocker(sid, question)
    if blocker is None or blocker.kind != "question":
        raise ApiError(400, f"{where}question_id: {question!r} is not a berth.question awaiting an answer")
    echo: Body = {"type": "berth.question_answer", "question_id": question, "answers": answers}

    def recorded() -> Body:
        state.view.resolve(sid, question)
        return state.view.record(sid, echo)

    return lambda: _tell(state, sid, m.AnswerQuestion(blocker.berth_id, dict(answers)), recorded)


def _setting(state: ApiState, sid: str, event: Body, kind: str, where: str) -> Callable[[], Body]:
    """The Berth extensions that change the model or permission mode, or ask for the model list."""
    echo: Body = {"type": kind}
    command: Any
    if kind == "berth.set_model":
        echo["model"] = rq.optional_str(event, "model")
        command = m.ChangeModel(echo["model"])
    elif kind == "berth.set_permission_mode":
        echo["permission_mode"] = rq.required_str(event, "permission_mode", where)
        if echo["permission_mode"] not in PERMISSION_MODES:
            modes = ", ".join(PERMISSION_MODES)
            raise ApiError(400, f"{where}permission_mode: one of {modes} (got {echo['permission_mode']!r})")
        command = m.ChangeSettings(permission_mode=echo["permission_mode"])
    else:
        command = m.RequestModels()
    return lambda: _tell(state, sid, command, lambda: state.view.record(sid, echo))


def _tell(state: ApiState, sid: str, command: Any, accepted: Callable[[], Body]) -> Body:
    """Tell ``command`` and wait for its outcome; ``accepted`` runs on the session's thread."""
    done = threading.Event()
    outcome: list[Rejected | Body] = []

    def reply(result: Rejected | None) -> None:
        outcome.append(result if result is not None else accepted())
        done.set()

    state.berth.tell_command(sid, command, reply)
    if not done.wait(ASK_TIMEOUT):
        raise ApiError(503, f"session {sid} did not answer within {ASK_TIMEOUT:g} s")
    result = outcome[0]
    if isinstance(result, Rejected):
        raise ApiError(result.code, result.reason)
    return result


def _unix(body: Body) -> float:
    return datetime.fromisoformat(str(body["processed_at"]).replace("Z", "+00:00")).timestamp()
