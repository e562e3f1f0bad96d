"""Claude Agent SDK messages turned into Berth frames.

Kept apart from the runner's lifecycle so the mapping reads in one place:

- ``stream_event`` text deltas become ``stream`` frames keyed by the API
  message id from ``message_start`` (one id per streamed message, not one
  per token);
- an assistant text block becomes an ``sdk_message`` of kind ``assistant``
  whose id is that same API message id, so a client can replace the
  streamed text with the final one; tool uses become ``tool_call``;
- tool results (in the CLI's ``user`` messages) become ``tool_result``;
- ``system/init`` and ``system/status`` report the model and permission mode
  (each report carries both, so neither drops out of the session info);
- ``system/api_retry`` (a failed request the CLI will retry, rate limits
  included) becomes ``api_retry`` with the CLI's reason and the time of the
  next attempt; a rate-limit event becomes ``rate_limit``;
- ``result`` becomes a ``result`` frame with cost and context usage.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from transport.protocol import (
    AgentToServer,
    ApiRetry,
    ChatMessage,
    ContextUsage,
    PermissionMode,
    RateLimit,
    Result,
    SdkMessage,
    SessionInfoUpdate,
    Stream,
)

if TYPE_CHECKING:
    from claude_agent_sdk import (
        AssistantMessage,
        RateLimitEvent,
        ResultMessage,
        StreamEvent,
        SystemMessage,
        UserMessage,
    )

SdkPermissionMode = Literal["default", "acceptEdits", "bypassPermissions", "plan"]
SDK_MODES: dict[PermissionMode, SdkPermissionMode] = {
    "normal": "default",
    "auto_edits": "acceptEdits",
    "dangerous": "bypassPermissions",
    "plan": "plan",
}
BERTH_MODES: dict[str, PermissionMode] = {sdk: berth for berth, sdk in SDK_MODES.items()}
MAX_TOOL_RESULT_CHARS = 100_000


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def context_usage(message: ResultMessage) -> ContextUsage:
    usage = message.usage or {}
    window = None
    for model_usage in (message.model_usage or {}).values():
        raw = model_usage.get("contextWindow") if isinstance(model_usage, dict) else None
        window = _int(raw) or window
    return ContextUsage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        cache_creation_tokens=_int(usage.get("cache_creation_input_tokens")),
        context_window=window,
        num_turns=_int(message.num_turns),
        duration_ms=_int(message.duration_ms),
    )


def result_text(message: ResultMessage) -> str | None:
    if not message.is_error:
        return message.result
    if (message.terminal_reason or "").startswith("aborted"):
        return "interrupted"
    if message.errors:
        return "; ".join(str(error) for error in message.errors)
    return message.result or message.subtype


def _tool_result_text(content: Any) -> str:
    """The text of a tool result, cut to ``MAX_TOOL_RESULT_CHARS`` (a huge file
    read must not become a frame the server refuses)."""
    if content is None:
        return ""
    if isinstance(content, str):
        text = content
    else:
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(json.dumps(block))
        text = "\n".join(parts)
    if len(text) > MAX_TOOL_RESULT_CHARS:
        cut = len(text) - MAX_TOOL_RESULT_CHARS
        text = f"{text[:MAX_TOOL_RESULT_CHARS]}\n…[{cut} more characters not shown]"
    return text


class Relay:
    """Stateful translator for one CLI session's message stream."""

    def __init__(
        self, emit: Callable[[AgentToServer], None], model: str | None, mode: PermissionMode
    ) -> None:
        self._emit = emit
        self._stream_id: str | None = None
        self._blocks_seen: dict[str, int] = {}
        self._model = model
        self._mode = mode

    def handle(self, message: object) -> ResultMessage | None:
        """Relay one SDK message; returns it if it ends the turn."""
        from claude_agent_sdk import (
            AssistantMessage,
            RateLimitEvent,
            ResultMessage,
            StreamEvent,
            SystemMessage,
            UserMessage,
        )

        if isinstance(message, RateLimitEvent):
            self._rate_limit(message)
        elif isinstance(message, StreamEvent):
            self._stream_event(message)
        elif isinstance(message, AssistantMessage):
            self._assistant(message)
        elif isinstance(message, UserMessage):
            self._user(message)
        elif isinstance(message, SystemMessage):
            self._system(message)
        elif isinstance(message, ResultMessage):
            self._blocks_seen.clear()
            self._emit(
                Result(
                    result=result_text(message),
                    cost_usd=float(message.total_cost_usd or 0.0),
                    is_error=message.is_error,
                    context_usage=context_usage(message),
                )
            )
            return message
        return None

    def _stream_event(self, message: StreamEvent) -> None:
        event = message.event
        kind = event.get("type")
        if kind == "message_start":
            api_message = event.get("message") or {}
            self._stream_id = str(api_message.get("id") or f"msg-{uuid.uuid4().hex}")
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            text = delta.get("text")
            if delta.get("type") == "text_delta" and text:
                if self._stream_id is None:
                    self._stream_id = f"msg-{uuid.uuid4().hex}"
                self._emit(Stream(message_id=self._stream_id, tokens=[text]))

    def _assistant(self, message: AssistantMessage) -> None:
        from claude_agent_sdk import TextBlock, ToolUseBlock

        base_id = message.message_id or f"msg-{uuid.uuid4().hex}"
        for block in message.content:
            if isinstance(block, TextBlock):
                seen = self._blocks_seen.get(base_id, 0)
                self._blocks_seen[base_id] = seen + 1
                message_id = base_id if seen == 0 else f"{base_id}-{seen}"
                self._chat(message_id, "assistant", block.text)
            elif isinstance(block, ToolUseBlock):
                summary = f"{block.name} {json.dumps(block.input)}"
                self._emit(
                    SdkMessage(
                        message=ChatMessage(
                            id=block.id,
                            kind="tool_call",
                            content=summary,
                            timestamp=time.time(),
                            tool_name=block.name,
                            tool_input=block.input,
                            tool_use_id=block.id,
                        )
                    )
                )
        if message.error:
            self._chat(f"error-{uuid.uuid4().hex}", "error", f"assistant error: {message.error}")

    def _user(self, message: UserMessage) -> None:
        from claude_agent_sdk import ToolResultBlock

        if isinstance(message.content, str):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                self._emit(
                    SdkMessage(
                        message=ChatMessage(
                            id=f"{block.tool_use_id}-result",
                            kind="tool_result",
                            content=_tool_result_text(block.content),
                            timestamp=time.time(),
                            tool_use_id=block.tool_use_id,
                            is_error=bool(block.is_error),
                        )
                    )
                )

    def _system(self, message: SystemMessage) -> None:
        data = message.data
        if message.subtype == "api_retry":
            self._api_retry(data)
            return
        if message.subtype not in ("init", "status"):
            return
        model = data.get("model") if message.subtype == "init" else None
        mode = BERTH_MODES.get(str(data.get("permissionMode")))
        changed_model = isinstance(model, str) and model != self._model
        changed_mode = mode is not None and mode != self._mode
        if not (changed_model or changed_mode):
            return
        if isinstance(model, str):
            self._model = model
        if mode is not None:
            self._mode = mode
        self._emit(SessionInfoUpdate(model=self._model, permission_mode=self._mode))

    def _api_retry(self, data: dict[str, Any]) -> None:
        delay_ms = _int(data.get("retry_delay_ms"))
        status = data.get("error_status")
        self._emit(
            ApiRetry(
                attempt=_int(data.get("attempt")),
                max_retries=_int(data.get("max_retries")),
                retry_at=time.time() + delay_ms / 1000,
                reason=str(data.get("error") or "unknown"),
                error_status=status if isinstance(status, int) else None,
            )
        )

    def _rate_limit(self, message: RateLimitEvent) -> None:
        info = message.rate_limit_info
        self._emit(
            RateLimit(
                status=str(info.status),
                resets_at=float(info.resets_at) if info.resets_at else None,
                limit_type=info.rate_limit_type,
            )
        )

    def _chat(self, message_id: str, kind: Any, content: str) -> None:
        self._emit(
            SdkMessage(message=ChatMessage(id=message_id, kind=kind, content=content, timestamp=time.time()))
        )

    def note(self, model: str | None, mode: PermissionMode) -> None:
        """The runner switched model or mode itself; don't report it twice."""
        self._model, self._mode = model, mode
