"""Errors in the reference's JSON shape, with the status codes the SDK maps to its classes.

``{"type": "error", "error": {"type": "not_found_error", "message": ...},
"request_id": ...}``: the ``anthropic`` SDK raises ``NotFoundError`` for 404,
``AuthenticationError`` for 401, ``BadRequestError`` for 400,
``ConflictError`` for 409, ``RateLimitError`` for 429, and so on. Every error
carries ``x-should-retry: false`` (Berth's refusals do not go away by
themselves), except 503 while the server starts.
"""

from __future__ import annotations

import uuid

import msgspec
from werkzeug.wrappers import Response

from transport.limits import bounded_message

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """A refused request: ``status`` is the HTTP code, the message names problem and fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def request_id() -> str:
    return "req_" + uuid.uuid4().hex


def error_response(status: int, message: str) -> Response:
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": bounded_message(message)},
        "request_id": request_id(),
    }
    response = Response(_encoder.encode(body), status=status, mimetype="application/json")
    response.headers["x-should-retry"] = "true" if status == 503 else "false"
    response.headers["request-id"] = body["request_id"]
    return response
