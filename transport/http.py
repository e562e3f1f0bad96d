"""Small helpers for JSON responses with werkzeug."""

from __future__ import annotations

from typing import Any

import msgspec
from werkzeug.wrappers import Response

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, mimetype="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)
