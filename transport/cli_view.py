"""How the ``berth`` CLI shows sessions: a table, a history, live events.

Colour and in-place redrawing only when the output is a terminal; anything
else gets plain lines that read well in a log file or a pipe.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

FINAL = ("error", "terminated")


class Style:
    def __init__(self, out: TextIO) -> None:
        self.tty = out.isatty()

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.tty else text

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


def _ago(when: float | None) -> str:
    if not when:
        return "-"
    seconds = max(0, int(time.time() - when))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def session_table(sessions: list[dict[str, Any]], out: TextIO) -> None:
    rows = [("ID", "NAME", "STATUS", "CREATED", "LAST MESSAGE")]
    for s in sessions:
        preview = (s.get("lastMessagePreview") or "").replace("\n", " ")
        rows.append((s["id"], s["name"], s["status"], _ago(s.get("createdAt")), preview[:40]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:4])]
        print("  ".join([*cells, row[4]]).rstrip(), file=out)


def dump_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value), file=out, flush=True)


class EventView:
    """Prints one session's events as a conversation; tracks its status and seq."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.style = Style(out)
        self.status = ""
        self.seq = 0
        self.pending_approval: dict[str, Any] | None = None
        self.pending_question: dict[str, Any] | None = None
        self._streaming: str | None = None

    def _line(self, text: str) -> None:
        self.end_stream()
        print(text, file=self.out, flush=True)

    def end_stream(self) -> None:
        if self._streaming is not None:
            print(file=self.out, flush=True)
            self._streaming = None

    @property
    def streaming(self) -> bool:
        return self._streaming is not None

    def fresh(self, frame: dict[str, Any]) -> bool:
        """False for an event already shown (a replay overlapping what we saw)."""
        seq = frame.get("seq")
        if frame.get("type") == "snapshot" or not isinstance(seq, int):
            return True
        return seq > self.seq

    def show(self, frame: dict[str, Any], history: bool = True) -> None:
        kind = frame.get("type")
        if isinstance(frame.get("seq"), int):
            self.seq = max(self.seq, frame["seq"]) if kind != "snapshot" else frame["seq"]
        if kind == "snapshot":
            self._status(frame["session"], quiet=True)
            if history:
                for message in frame.get("history", []):
                    self.message(message)
            self.pending_approval = frame.get("pendingApproval")
            self.pending_question = frame.get("pendingQuestion")
            self._ask()
        elif kind == "session_update":
            self._status(frame["session"])
        elif kind == "message":
            self.message(frame["message"])
        elif kind == "stream":
            self._stream(frame["messageId"], "".join(frame["tokens"]))
        elif kind == "approval_request":
            self.pending_approval = frame["approval"]
            self._ask()
        elif kind == "question":
            self.pending_question = frame["question"]
            self._ask()
        elif kind == "result":
            self.pending_approval = self.pending_question = None
            cost = frame.get("costUsd") or 0.0
            label = "turn ended with an error" if frame.get("isError") else "turn done"
            detail = f": {frame['result']}" if frame.get("isError") and frame.get("result") else ""
            self._line(self.style.dim(f"— {label}{detail} (cost ${cost:.4f})"))
        elif kind == "protocol_error":
            self._line(self.style.red(f"! the server refused: {frame.get('message')}"))
        elif kind == "auth_alert":
            self._line(self.style.yellow(f"! {frame.get('message')}"))

    def _status(self, session: dict[str, Any], quiet: bool = False) -> None:
        status = session["status"]
        if status == self.status:
            return
        before, self.status = self.status, status
        if before == "awaiting_approval" or status in FINAL:
            self.pending_approval = None
        if before == "awaiting_answer" or status in FINAL:
            self.pending_question = None
        reason = f" ({session['statusReason']})" if session.get("statusReason") else ""
        if not quiet or status in FINAL:
            self._line(self.style.dim(f"· status: {status}{reason}"))

    def _stream(self, message_id: str, text: str) -> None:
        if self._streaming != message_id:
            self.end_stream()
            self._streaming = message_id
        print(text, end="", file=self.out, flush=True)

    def message(self, message: dict[str, Any]) -> None:
        kind, content = message["kind"], message["content"]
        if kind == "assistant" and self._streaming == message["id"]:
            self.end_stream()
            return
        s = self.style
        if kind == "user":
            self._line(s.bold(f"> {content}"))
        elif kind == "assistant":
            self._line(content)
        elif kind == "tool_call":
            self._line(
                s.cyan(f"⚙ {message.get('toolName') or 'tool'}: {json.dumps(message.get('toolInput'))}")
            )
        elif kind == "tool_result":
            text = f"  ↳ {content}"
            self._line(s.red(text) if message.get("isError") else s.dim(text))
        elif kind == "error":
            self._line(s.red(f"! {content}"))
        else:
            self._line(s.dim(f"· {content}"))

    def _ask(self) -> None:
        s = self.style
        if self.pending_approval is not None:
            a = self.pending_approval
            self._line(s.yellow(f"? approve {a['toolName']} {json.dumps(a.get('toolInput'))}"))
            self._line(s.yellow("  [y] allow  [n] deny   (or: berth approve|deny <id>)"))
        if self.pending_question is not None:
            for item in self.pending_question.get("questions", []):
                self._line(s.yellow(f"? {item['question']}"))
                for number, option in enumerate(item.get("options", []), 1):
                    self._line(s.yellow(f"  [{number}] {option['label']}"))
