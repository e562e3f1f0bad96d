"""Session endpoints: create, retrieve, list, update, archive, delete; and reading its resources."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from werkzeug.wrappers import Request, Response

from actors.api import BerthError
from transport.limits import check_text
from transport.protocol import PERMISSION_MODES, SessionInfo
from transport.v1 import requests as rq
from transport.v1.catalog import Agent, agent_named, container_settings, default_agent, usable_environment
from transport.v1.errors import ApiError
from transport.v1.ids import berth_session_id, page_position, page_token, session_id
from transport.v1.mapping import timestamp
from transport.v1.records import SessionRecord, metadata_problem
from transport.v1.resource import api_status, session_body

if TYPE_CHECKING:
    from transport.v1.app import ApiState

_encoder = msgspec.json.Encoder()
UNSUPPORTED_CREATE = {
    "budget": "Berth does not enforce spend ceilings",
    "vault_ids": "Berth has no vaults; credentials come from its configuration",
}
UNSUPPORTED_UPDATE = {
    "agent": "a session's agent is fixed when it is created",
    "budget": "Berth does not enforce spend ceilings",
    "vault_ids": "Berth has no vaults",
}


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, mimetype="application/json")


def create(state: ApiState, request: Request) -> Response:
    body = rq.json_body(request)
    rq.reject_unsupported(body, UNSUPPORTED_CREATE)
    agent, model = _agent(body.get("agent"))
    environment = usable_environment(state.environments, rq.required_str(body, "environment_id"))
    repo_url, branch = _repository(body.get("resources"))
    title = rq.optional_str(body, "title")
    metadata = _metadata(body.get("metadata") or {})
    initial = [_initial_text(event, i) for i, event in enumerate(body.get("initial_events") or [])]
    mode = rq.optional_str(body, "berth_permission_mode") or "normal"
    if mode not in PERMISSION_MODES:
        raise ApiError(400, f"berth_permission_mode: one of {', '.join(PERMISSION_MODES)} (got {mode!r})")
    limits = state.limits
    if limits is not None:  # transport.limits, named as this API names the fields
        check_text("title", title, limits.name_chars)
        check_text("agent.model", model, limits.model_chars)
        check_text("resources[0].url", repo_url, limits.repo_url_chars)
        check_text("resources[0].checkout", branch, limits.branch_chars)
        for index, text in enumerate(initial):
            check_text(f"initial_events[{index}].content", text, limits.prompt_chars)
    berth = state.berth
    _prune(state)
    sid = berth.create_session(
        name=title or "session",
        repo_url=repo_url,
        branch=branch,
        model=model,
        runner=agent.runner,
        permission_mode=mode,
        container=container_settings(state.environments, environment),
    )
    record = SessionRecord(agent.id, environment.id, model, {k: v for k, v in metadata.items() if v})
    state.records.put(sid, record)
    for text in initial:
        berth.send_message(sid, text)
    return json_response(_body(state, berth.get_session(sid).info))


def retrieve(state: ApiState, request: Request, api_id: str) -> Response:
    return json_response(_body(state, state.berth.get_session(berth_session_id(api_id)).info))


def list_sessions(state: ApiState, request: Request) -> Response:
    limit = rq.limit_arg(request, 20, 1000)
    order = rq.order_arg(request, "desc")
    statuses = set(rq.list_arg(request, "statuses"))
    archived = rq.bool_arg(request, "include_archived")
    agent_id = request.args.get("agent_id")
    bounds = rq.time_bounds(request)
    _prune(state)
    infos = sorted(state.berth.list_sessions(), key=lambda i: (i.created_at, i.id), reverse=order == "desc")
    page = request.args.get("page")
    if page is not None:
        position = page_position(page)
        index = next((n for n, info in enumerate(infos) if info.id == position), None)
        if index is None:
            raise ApiError(
                400, f"page: {page!r} is not a page token from this server (or its session is gone)"
            )
        infos = infos[index + 1 :]
    chosen = []
    for info in infos:
        record = _record(state, info.id)
        if record.archived_at is not None and not archived:
            continue
        if statuses and api_status(info.status) not in statuses:
            continue
        if agent_id is not None and record.agent_id != agent_id:
            continue
        if not rq.within(info.created_at, bounds):
            continue
        chosen.append(info)
        if len(chosen) > limit:
            break
    more = len(chosen) > limit
    chosen = chosen[:limit]
    data = [_body(state, info) for info in chosen]
    next_page = page_token(chosen[-1].id) if more and chosen else None
    return json_response({"data": data, "next_page": next_page, "prev_page": None})


def update(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    body = rq.json_body(request)
    rq.reject_unsupported(body, UNSUPPORTED_UPDATE)
    view = state.berth.get_session(sid)
    if "title" in body:
        title = rq.optional_str(body, "title") or "session"
        if state.limits is not None:
            check_text("title", title, state.limits.name_chars)
        if title != view.info.name:
            state.berth.update_settings(sid, name=title)
    if body.get("metadata") is not None:
        patch = _metadata(body["metadata"])
        merged = dict(_record(state, sid).metadata)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(merged) > 16:
            raise ApiError(400, "metadata holds at most 16 pairs after the update")
        before = _record(state, sid).metadata
        state.records.change(sid, _record(state, sid), metadata=merged)
        if merged != before:
            state.view.record(sid, {"type": "session.updated", "metadata": merged})
    return json_response(_body(state, state.berth.get_session(sid).info))


def archive(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    info = state.berth.get_session(sid).info
    if not info.status.is_final:
        state.berth.terminate_session(sid, "archived")
    record = _record(state, sid)
    if record.archived_at is None:
        state.records.change(sid, record, archived_at=time.time())
    return json_response(_body(state, state.berth.get_session(sid).info))


def delete(state: ApiState, request: Request, api_id: str) -> Response:
    sid = berth_session_id(api_id)
    state.berth.delete_session(sid)
    state.view.drop(sid, state.view.deleted_event(sid, timestamp(time.time())))
    state.records.drop(sid)
    return json_response({"id": session_id(sid), "type": "session_deleted"})


def list_resources(state: ApiState, request: Request, api_id: str) -> Response:
    resources = _body(state, state.berth.get_session(berth_session_id(api_id)).info)["resources"]
    return json_response({"data": resources, "next_page": None})


def resource(state: ApiState, api_id: str, resource_id: str) -> Response:
    resources = _body(state, state.berth.get_session(berth_session_id(api_id)).info)["resources"]
    for found in resources:
        if found["id"] == resource_id:
            return json_response(found)
    raise ApiError(404, f"session {api_id} has no resource {resource_id!r}")


# ---------------------------------------------------------------- helpers


def _body(state: ApiState, info: SessionInfo) -> dict[str, Any]:
    record = _record(state, info.id)
    try:
        agent = agent_named(record.agent_id)
    except ApiError:
        agent = default_agent(state.config)
    return session_body(info, record, agent)


def _record(state: ApiState, sid: str) -> SessionRecord:
    """The API's record of a session; sessions made over Berth's own API get the defaults."""
    return state.records.get(sid) or SessionRecord(default_agent(state.config).id, "default")


def _prune(state: ApiState) -> None:
    """Forget what the API kept about sessions Berth no longer has (evicted)."""
    state.view.forget_ended()
    for sid in state.records.known():
        try:
            state.berth.lookup(sid)
        except BerthError:
            state.records.drop(sid)


def _agent(value: Any) -> tuple[Agent, str | None]:
    """The agent and the model override of ``agent`` (an id, or an agent object)."""
    if isinstance(value, str):
        return agent_named(value), None
    if not isinstance(value, dict):
        raise ApiError(
            400, "agent: an agent id (e.g. 'builtin', 'claude-code') or an agent object is required"
        )
    kind = value.get("type")
    agent = agent_named(rq.required_str(value, "id", "agent."))
    version = value.get("version")
    if version is not None and version != 1:
        raise ApiError(400, f"agent.version: Berth's agents have version 1 only (got {version!r})")
    if kind == "agent":
        return agent, None
    if kind != "agent_with_overrides":
        raise ApiError(400, f"agent.type: 'agent' or 'agent_with_overrides' (got {kind!r})")
    for name in ("tools", "mcp_servers", "skills", "system"):
        if name in value:
            raise ApiError(400, f"agent.{name} overrides are not supported by Berth; only model is")
    model = value.get("model")
    if isinstance(model, dict):
        model = model.get("id")
    if model is not None and (not isinstance(model, str) or not model):
        raise ApiError(400, "agent.model: a model id string (or {'id': ...}) is required")
    return agent, model


def _repository(resources: Any) -> tuple[str | None, str | None]:
    if resources is None:
        return None, None
    if not isinstance(resources, list):
        raise ApiError(400, "resources: a list is required")
    repos = [r for r in resources if isinstance(r, dict) and r.get("type") == "github_repository"]
    others = [r.get("type") if isinstance(r, dict) else r for r in resources if r not in repos]
    if others:
        raise ApiError(400, f"resources: only github_repository is supported by Berth (got {others[0]!r})")
    if len(repos) > 1:
        raise ApiError(400, "resources: Berth mounts one repository per session")
    if not repos:
        return None, None
    repo = repos[0]
    url = rq.required_str(repo, "url", "resources[0].")
    if repo.get("authorization_token"):
        raise ApiError(
            400,
            "resources[0].authorization_token is not supported: Berth gives every session the "
            "GitHub token of its configuration (BerthConfig.github_token)",
        )
    if repo.get("mount_path") not in (None, "/workspace"):
        raise ApiError(400, "resources[0].mount_path: Berth mounts the repository at /workspace")
    checkout = repo.get("checkout")
    if checkout is None:
        return url, None
    if not isinstance(checkout, dict) or checkout.get("type") != "branch":
        raise ApiError(
            400, "resources[0].checkout: only a branch checkout ({type: 'branch', name}) is supported"
        )
    return url, rq.required_str(checkout, "name", "resources[0].checkout.")


def _metadata(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise ApiError(400, "metadata: an object of string keys and string values is required")
    problem = metadata_problem(value)
    if problem:
        raise ApiError(400, problem)
    return value


def _initial_text(event: Any, index: int) -> str:
    where = f"initial_events[{index}]."
    if not isinstance(event, dict) or event.get("type") != "user.message":
        raise ApiError(400, f"{where}type: Berth supports 'user.message' initial events only")
    return rq.text_content(event.get("content"), where)
