"""Berth's journal events as the reference's session events: one pure mapper per session.

The mapper sees a session's journal events in order and turns each into
zero or more API events. *Listed* events get a key (``ids.KEY_SPAN`` per
journal ``seq``) that only ever grows, so event ids sort in event order and
``Last-Event-ID`` resumption is "every key above it". *Previews* (the
reference's ``event_start`` / ``event_delta``) are live-only: streamed tokens
of an assistant message open a preview whose id is reserved at its first
token and carried by the ``agent.message`` that completes it. When anything
else is listed while a preview is open, the preview is dropped (deltas are
best-effort) and the message, when it comes, gets a fresh id: ids never go
back in time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from transport import protocol as p
from transport.protocol import SessionStatus as S
from transport.v1.ids import KEY_SPAN, event_id

Body = dict[str, Any]


@dataclass(frozen=True)
class Listed:
    """An event of the session's history: stored, listed, streamed."""

    key: int
    body: Body


@dataclass(frozen=True)
class Preview:
    """An ``event_start`` or ``event_delta``: streamed live to clients that asked, never listed."""

    body: Body


@dataclass(frozen=True)
class Blocker:
    """What a ``requires_action`` event id stands for: a pending approval or question."""

    kind: str  # "approval" | "question"
    berth_id: str


@dataclass
class _OpenPreview:
    message_id: str
    key: int
    text: list[str] = field(default_factory=list)


def timestamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def text_blocks(text: str) -> list[Body]:
    return [{"type": "text", "text": text}]


def preview_start(key: int) -> Preview:
    return Preview({"type": "event_start", "event": {"type": "agent.message", "id": event_id(key)}})


def preview_delta(key: int, text: str) -> Preview:
    delta = {"type": "content_delta", "index": 0, "content": {"type": "text", "text": text}}
    return Preview({"type": "event_delta", "event_id": event_id(key), "delta": delta})


class EventMapper:
    def __init__(self) -> None:
        self.last_key = 0
        self.last_seq = 0
        self.info: p.SessionInfo | None = None
        self.preview: _OpenPreview | None = None
        #: requires_action event ids still open -> what answers them.
        self.blockers: dict[str, Blocker] = {}
        #: Berth tool-use ids -> the id of their ``agent.tool_use`` event.
        self._tool_events: dict[str, str] = {}
        #: ``agent.tool_use`` events not yet confirmed: (event id, tool name).
        self._unconfirmed: list[tuple[str, str]] = []

    # ------------------------------------------------------------ journal in

    def feed(self, event: p.SessionEvent) -> list[Listed | Preview]:
        self.last_seq = max(self.last_seq, event.seq)
        out: list[Listed | Preview] = []
        match event:
            case p.StreamTokens(message_id=mid, tokens=tokens):
                self._stream(event.seq, mid, "".join(tokens), out)
            case p.MessageAdded(message=message):
                self._message(event.seq, message, out)
            case p.SessionUpdate(session=info):
                self._session(event.seq, info, out)
            case p.ApprovalRequested(approval=approval):
                self._approval(event.seq, approval, out)
            case p.QuestionAsked(question=question):
                body: Body = {
                    "type": "berth.question",
                    "question_id": question.id,
                    "questions": [_question_item(q) for q in question.questions],
                }
                asked = self._list(event.seq, body, question.timestamp, out)
                self.blockers[event_id(asked.key)] = Blocker("question", question.id)
                self._requires_action(event.seq, out)
            case p.TurnResult():
                self.blockers.clear()
                self._unconfirmed.clear()
                body = {
                    "type": "berth.turn_result",
                    "result": event.result,
                    "is_error": event.is_error,
                    "cost_usd": event.cost_usd,
                    "usage": _usage(event.context_usage),
                }
                self._list(event.seq, body, None, out)
            case p.ApiRetrying(reason=reason, error_status=status, attempt=attempt, max_retries=most):
                kind = {429: "model_rate_limited_error", 529: "model_overloaded_error"}.get(
                    status or 0, "unknown_error"
                )
                text = f"Claude API request failed ({reason}); retry {attempt} of {most}"
                error = {"type": kind, "message": text, "retry_status": {"type": "retrying"}}
                self._list(event.seq, {"type": "session.error", "error": error}, None, out)
            case p.RateLimited(status="rejected", limit_type=limit):
                text = f"Claude's rate limit was reached ({limit or 'usage'})"
                error = {
                    "type": "model_rate_limited_error",
                    "message": text,
                    "retry_status": {"type": "retrying"},
                }
                self._list(event.seq, {"type": "session.error", "error": error}, None, out)
            case p.ModelsAvailable(models=models):
                listed = [
                    {"id": m.value, "display_name": m.display_name, "description": m.description}
                    for m in models
                ]
                self._list(event.seq, {"type": "berth.models", "models": listed}, None, out)
        return out

    def record(self, body: Body, when: float | None = None) -> Listed:
        """An event the API itself accepted (an interrupt, a confirmation, an update)."""
        return self._list(self.last_seq, body, when, [])

    def open_preview(self) -> list[Preview]:
        """What a stream that joins mid-message needs to show the text so far."""
        if self.preview is None:
            return []
        return [preview_start(self.preview.key), preview_delta(self.preview.key, "".join(self.preview.text))]

    # ------------------------------------------------------------ kinds

    def _stream(self, seq: int, message_id: str, text: str, out: list[Listed | Preview]) -> None:
        if self.preview is None or self.preview.message_id != message_id:
            self.preview = _OpenPreview(message_id, self._next_key(seq))
            out.append(preview_start(self.preview.key))
        self.preview.text.append(text)
        out.append(preview_delta(self.preview.key, text))

    def _message(self, seq: int, message: p.ChatMessage, out: list[Listed | Preview]) -> None:
        content = message.content
        when = message.timestamp
        match message.kind:
            case "user":
                self._list(seq, {"type": "user.message", "content": text_blocks(content)}, when, out)
            case "assistant":
                body: Body = {"type": "agent.message", "content": text_blocks(content)}
                preview = self.preview
                if preview is not None and preview.message_id == message.id:
                    self.preview = None
                    self._emit(preview.key, body, when, out)
                else:
                    self._list(seq, body, when, out)
            case "tool_call":
                body = {
                    "type": "agent.tool_use",
                    "name": message.tool_name or "tool",
                    "input": message.tool_input or {},
                }
                listed = self._list(seq, body, when, out)
                if message.tool_use_id:
                    self._tool_events[message.tool_use_id] = event_id(listed.key)
                self._unconfirmed.append((event_id(listed.key), str(body["name"])))
            case "tool_result":
                use = message.tool_use_id or ""
                body = {
                    "type": "agent.tool_result",
                    "tool_use_id": self._tool_events.get(use, use),
                    "content": text_blocks(content),
                    "is_error": message.is_error,
                }
                self._list(seq, body, when, out)
            case "error":
                error = {"type": "unknown_error", "message": content, "retry_status": {"type": "exhausted"}}
                self._list(seq, {"type": "session.error", "error": error}, when, out)
            case _:
                self._list(seq, {"type": "berth.system", "text": content}, when, out)

    def _session(self, seq: int, info: p.SessionInfo, out: list[Listed | Preview]) -> None:
        before, self.info = self.info, info
        if before is None:
            return
        if info.name != before.name:
            self._list(seq, {"type": "session.updated", "title": info.name}, None, out)
        if (info.model, info.permission_mode) != (before.model, before.permission_mode):
            body: Body = {
                "type": "berth.session_settings",
                "model": info.model,
                "permission_mode": info.permission_mode,
            }
            self._list(seq, body, None, out)
        old, new = before.status, info.status
        if new is old:
            return
        if new is S.RUNNING:
            if old in (S.AWAITING_APPROVAL, S.AWAITING_ANSWER):
                self.blockers.clear()  # answered, through whichever API
            self._list(seq, {"type": "session.status_running"}, None, out)
        elif new is S.IDLE and old is not S.STARTING:
            self.blockers.clear()
            self._list(seq, {"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}, None, out)
        elif new in (S.AWAITING_APPROVAL, S.AWAITING_ANSWER) and old is S.RECONNECTING and self.blockers:
            self._requires_action(seq, out)
        elif new is S.RECONNECTING:
            self._list(
                seq, {"type": "session.status_rescheduled", "berth_reason": info.status_reason}, None, out
            )
        elif new.is_final:
            self.blockers.clear()
            self._list(
                seq, {"type": "session.status_terminated", "berth_reason": info.status_reason}, None, out
            )

    def _approval(self, seq: int, approval: p.PendingApproval, out: list[Listed | Preview]) -> None:
        use_id = None
        for index in range(len(self._unconfirmed) - 1, -1, -1):
            candidate, name = self._unconfirmed[index]
            if name == approval.tool_name:
                use_id = candidate
                del self._unconfirmed[index]
                break
        if use_id is None:
            body = {"type": "agent.tool_use", "name": approval.tool_name, "input": approval.tool_input}
            use_id = event_id(self._list(seq, body, approval.timestamp, out).key)
        self.blockers[use_id] = Blocker("approval", approval.id)
        self._requires_action(seq, out)

    def _requires_action(self, seq: int, out: list[Listed | Preview]) -> None:
        stop = {"type": "requires_action", "event_ids": list(self.blockers)}
        self._list(seq, {"type": "session.status_idle", "stop_reason": stop}, None, out)

    # ------------------------------------------------------------ keys

    def _next_key(self, seq: int) -> int:
        return max(seq * KEY_SPAN, self.last_key + 1)

    def _list(self, seq: int, body: Body, when: float | None, out: list[Listed | Preview]) -> Listed:
        self.preview = None  # a preview never spans another listed event
        return self._emit(self._next_key(seq), body, when, out)

    def _emit(self, key: int, body: Body, when: float | None, out: list[Listed | Preview]) -> Listed:
        self.last_key = key
        full = {
            "id": event_id(key),
            **body,
            "processed_at": timestamp(when if when is not None else time.time()),
        }
        listed = Listed(key, full)
        out.append(listed)
        return listed


def _question_item(item: p.QuestionItem) -> Body:
    return {
        "question": item.question,
        "header": item.header,
        "multi_select": item.multi_select,
        "options": [{"label": o.label, "description": o.description} for o in item.options],
    }


def _usage(usage: p.ContextUsage | None) -> Body | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "duration_ms": usage.duration_ms,
    }
