"""A real WebSocket client for tests (websocket-client), decoding server frames."""

from __future__ import annotations

import json
import time
from typing import Any

import websocket


class WsPeer:
    """A client or fake agent on a real socket; ``recv`` decodes JSON frames."""

    def __init__(self, url: str, headers: list[str] | None = None, timeout: float = 10.0) -> None:
        self.ws = websocket.create_connection(
            url, header=headers or [], timeout=timeout, skip_utf8_validation=True
        )

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def send_raw(self, text: str) -> None:
        self.ws.send(text)

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        self.ws.settimeout(timeout)
        data = self.ws.recv()
        if not data:
            raise ConnectionError("closed")
        result: dict[str, Any] = json.loads(data)
        return result

    def recv_until(
        self, predicate: Any, timeout: float = 10.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Frames until one matches; returns it and everything seen before it."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching frame within {timeout} s; saw {[f.get('type') for f in seen]}"
                )
            frame = self.recv(remaining)
            if predicate(frame):
                return frame, seen
            seen.append(frame)

    def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Read until the server's close frame; its code and reason (None: no frame)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                return None, ""
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(data) < 2:
                    return 1005, ""
                return int.from_bytes(data[:2], "big"), data[2:].decode(errors="replace")
        raise AssertionError(f"the server did not close within {timeout} s")

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
