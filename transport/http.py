"""Small helpers for JSON responses with werkzeug."""

from __future__ import annotations

from typing import Any

import msgspec
from werkzeug.wrappers import Response

from transport.limits import bounded_message

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, mimetype="application/json")


def error_response(status: int, message: str) -> Response:
    """``{"error": message}``; a message quoting a huge value is cut (``transport.limits``)."""
    return json_response({"error": bounded_message(message)}, status)
