"""A REST call to a running server, as a client would make it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def rest_call(
    base_url: str, token: str, method: str, path: str, body: Any = None, timeout: float = 30
) -> tuple[int, Any]:
    """(status, decoded JSON body or None); HTTP errors are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
