"""One running Claude Code CLI, connected through ``ClaudeSDKClient``.

The runner decides when a CLI starts, parks or resumes; this module only
does it: connect (spawn plus the initialize handshake), read the CLI's
messages on a task until the stream ends, and stop it within a bound,
killing a CLI that does not exit on its own. ``claude-agent-sdk`` is
imported lazily by the caller: the options object arrives built.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from transport.protocol import ModelInfo

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

log = logging.getLogger(__name__)


def _kill(process: Any) -> None:
    if process is not None and process.returncode is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass


class CliConnection:
    """A connected CLI; ``ended`` settles when its message stream ends."""

    def __init__(self, client: ClaudeSDKClient, on_message: Callable[[Any], None]) -> None:
        self.client = client
        self._on_message = on_message
        self.process: Any = None
        self.models: list[ModelInfo] = []
        self.reported_mode: str | None = None
        self.start_seconds = 0.0
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        #: While set, messages go here, not to ``on_message`` (a warm-up turn's).
        self._diverted: asyncio.Future[None] | None = None
        self.closing = False

    @classmethod
    async def open(cls, options: ClaudeAgentOptions, on_message: Callable[[Any], None]) -> CliConnection:
        """Spawn the CLI and complete its handshake; raises what the SDK raised."""
        from claude_agent_sdk import ClaudeSDKClient

        started = time.monotonic()
        connection = cls(ClaudeSDKClient(options), on_message)
        await connection.client.connect()
        connection.process = getattr(getattr(connection.client, "_transport", None), "_process", None)
        info = await connection.client.get_server_info() or {}
        connection.models = [
            ModelInfo(
                value=str(m.get("value", "")),
                display_name=str(m.get("displayName", "")),
                description=str(m.get("description", "")),
            )
            for m in info.get("models") or []
            if isinstance(m, dict)
        ]
        mode = info.get("current_permission_mode")
        connection.reported_mode = mode if isinstance(mode, str) else None
        connection.start_seconds = time.monotonic() - started
        connection._reader = asyncio.ensure_future(connection._read())
        return connection

    @property
    def pid(self) -> int | None:
        return getattr(self.process, "pid", None)

    async def _read(self) -> None:
        try:
            async for message in self.client.receive_messages():
                diverted = self._diverted
                if diverted is None:
                    self._on_message(message)
                elif type(message).__name__ == "ResultMessage" and not diverted.done():
                    diverted.set_result(None)
        except asyncio.CancelledError:
            if not self.ended.done():
                self.ended.set_result(None)
            raise
        except BaseException as exc:
            if not self.ended.done():
                self.ended.set_exception(exc)
                self.ended.exception()  # retrieved: the runner may be parked
            return
        if not self.ended.done():
            self.ended.set_result(None)

    async def query(self, content: str) -> None:
        await self.client.query(content)

    async def warm_up(self, prompt: str, timeout: float) -> bool:
        """One turn nobody sees, then the conversation rewound to before it.

        The turn runs the CLI's first-prompt work (code run for the first time,
        tool definitions, its first API connection) ahead of the session's first
        prompt; its messages are dropped, and ``rewind_conversation`` takes the
        prompt and its reply back out of the conversation (and its transcript),
        so the session's first prompt is again the conversation's first. True if
        the CLI confirmed the rewind; False (the conversation may hold the turn)
        otherwise.
        """
        send_control = getattr(getattr(self.client, "_query", None), "_send_control_request", None)
        if send_control is None:
            log.warning("this claude-agent-sdk cannot rewind a conversation; no warm-up")
            return False
        message_id = str(uuid.uuid4())

        async def message() -> AsyncIterator[dict[str, Any]]:
            user = {"role": "user", "content": prompt}
            yield {"type": "user", "message": user, "parent_tool_use_id": None, "uuid": message_id}

        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._diverted = finished
        try:
            await self.client.query(message())
            waits: set[asyncio.Future[None]] = {finished, self.ended}
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if finished not in done:
                log.warning("the warm-up turn did not finish within %.1f s", timeout)
                return False
            rewind = {"subtype": "rewind_conversation", "target_message_uuid": message_id}
            response = await send_control(rewind, timeout)
        except Exception as exc:
            log.warning("the warm-up failed: %s", exc)
            return False
        finally:
            self._diverted = None
        if not (isinstance(response, dict) and response.get("rewound") is True):
            log.warning("Claude Code did not rewind the warm-up turn: %s", response)
            return False
        return True

    async def close(self, timeout: float) -> None:
        """Stop reading and stop the CLI, killing it after ``timeout``."""
        self.closing = True

        async def shut() -> None:
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            await self.client.disconnect()

        closer = asyncio.ensure_future(shut())
        _, pending = await asyncio.wait({closer}, timeout=timeout)
        if pending:
            log.warning("Claude Code did not stop within %.1f s; killing it", timeout)
            _kill(self.process)
            _, pending = await asyncio.wait({closer}, timeout=timeout)
            if pending:
                log.error("the SDK did not finish disconnecting; abandoning it")
        _kill(self.process)
        if not self.ended.done():
            self.ended.set_result(None)
