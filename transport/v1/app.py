"""The ``/v1/`` application: authentication, routing and errors, over one Berth.

``BerthServer`` hands every ``/v1/…`` request here. Clients authenticate with
the server's API token as ``Authorization: Bearer`` (the SDK's
``auth_token``) or ``x-api-key`` (its ``api_key``), and send the beta header
``anthropic-beta: managed-agents-2026-04-01`` as the reference requires.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from actors.api import Berth, BerthError
from actors.config import BerthConfig
from actors.secret import Secret
from transport.auth import bearer, matches
from transport.limits import InputRefused, Limits, too_large
from transport.v1 import event_routes, session_routes
from transport.v1.api_store import ApiStore
from transport.v1.catalog import Environment, load_environments
from transport.v1.errors import ApiError, error_response
from transport.v1.records import Records
from transport.v1.streams import StreamSlots
from transport.v1.view import SessionsView

log = logging.getLogger(__name__)

BETA = "managed-agents-2026-04-01"

ROUTES = Map(
    [
        Rule("/v1/sessions", endpoint="create", methods=["POST"]),
        Rule("/v1/sessions", endpoint="list", methods=["GET"]),
        Rule("/v1/sessions/<sid>", endpoint="retrieve", methods=["GET"]),
        Rule("/v1/sessions/<sid>", endpoint="update", methods=["POST"]),
        Rule("/v1/sessions/<sid>", endpoint="delete", methods=["DELETE"]),
        Rule("/v1/sessions/<sid>/archive", endpoint="archive", methods=["POST"]),
        Rule("/v1/sessions/<sid>/resources", endpoint="resources_list", methods=["GET"]),
        Rule("/v1/sessions/<sid>/resources/<rid>", endpoint="resources_retrieve", methods=["GET"]),
        Rule("/v1/sessions/<sid>/events", endpoint="events_list", methods=["GET"]),
        Rule("/v1/sessions/<sid>/events", endpoint="events_send", methods=["POST"]),
        Rule("/v1/sessions/<sid>/events/stream", endpoint="events_stream", methods=["GET"]),
    ]
)


@dataclass
class ApiState:
    """What the handlers share: the tree, its config, and the API's own view and records."""

    berth: Berth
    config: BerthConfig
    environments: dict[str, Environment]
    view: SessionsView
    slots: StreamSlots
    records: Records = field(default_factory=Records)
    limits: Limits | None = None
    store: ApiStore | None = None


Handler = Callable[[ApiState, Request, str], Response]

HANDLERS: dict[str, Handler] = {
    "retrieve": session_routes.retrieve,
    "update": session_routes.update,
    "delete": session_routes.delete,
    "archive": session_routes.archive,
    "resources_list": session_routes.list_resources,
    "events_list": event_routes.list_events,
    "events_send": event_routes.send,
    "events_stream": event_routes.stream,
}


class SessionsApi:
    def __init__(self, api_token: Secret) -> None:
        self._api_token = api_token
        self.state: ApiState | None = None

    def start(self, berth: Berth, config: BerthConfig) -> None:
        """Raises ValueError naming a bad environments file before anything is served."""
        store = ApiStore.open(config)
        view = SessionsView(config.sessions_api_event_limit, store)
        environments = load_environments(config)
        view.start(berth.bus, lambda sid: _exists(berth, sid))
        for info in berth.list_sessions():  # sessions recovered from the store
            berth.replay_kept(info.id, functools.partial(view.rebuild, info.id))
        self.state = ApiState(
            berth,
            config,
            environments,
            view,
            StreamSlots(config.sessions_api_max_streams),
            records=Records(store),
            limits=Limits.from_config(config),
            store=store,
        )

    def stop(self) -> None:
        """Ends every open stream, so no server thread waits on one."""
        if self.state is not None:
            self.state.view.stop()
            if self.state.store is not None:
                self.state.store.close()

    def respond(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        except InputRefused as exc:  # transport.limits: a field over its limit
            return error_response(400, str(exc))
        except BerthError as exc:
            return error_response(exc.code, str(exc))
        except TimeoutError as exc:
            return error_response(503, f"Berth did not answer in time: {exc}")
        except Exception:
            log.exception("sessions API request %s %s failed", request.method, request.path)
            return error_response(500, "internal error; the server log has the details")

    def _dispatch(self, request: Request) -> Response:
        state = self.state
        if state is None:
            raise ApiError(503, "Berth is starting")
        try:
            endpoint, args = ROUTES.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            raise ApiError(exc.code or 404, f"{request.method} {request.path}: {exc.description}") from None
        if not self._authorised(request):
            raise ApiError(
                401,
                "missing or wrong API token: send the server's API token as "
                "'Authorization: Bearer <token>' or 'x-api-key: <token>'",
            )
        if BETA not in request.headers.get("anthropic-beta", ""):
            raise ApiError(400, f"this endpoint is in beta: send the header 'anthropic-beta: {BETA}'")
        if state.limits is not None:
            _read_body(request, state.limits.request_bytes)
        if endpoint == "create":
            return session_routes.create(state, request)
        if endpoint == "list":
            return session_routes.list_sessions(state, request)
        if endpoint == "resources_retrieve":
            return session_routes.resource(state, args["sid"], args["rid"])
        return HANDLERS[endpoint](state, request, args["sid"])

    def _authorised(self, request: Request) -> bool:
        given = bearer(request.headers.get("Authorization")) or request.headers.get("x-api-key")
        return matches(given, self._api_token)


def _read_body(request: Request, limit: int) -> None:
    """Read (and cache) the body up to ``limit`` bytes before any handler runs; 413 past it."""
    request.max_content_length = limit + 1  # one byte over shows a chunked body that is too long
    try:
        data = request.get_data()
    except HTTPException:
        data = None
    if data is None or len(data) > limit:
        raise ApiError(413, too_large("the request body", limit))


def _exists(berth: Berth, session_id: str) -> bool:
    try:
        berth.lookup(session_id)
    except BerthError:
        return False
    return True
