"""The live view behind ``berth attach``, ``logs -f``, ``send --wait`` and ``new``.

One thread waits on the WebSocket and (on a terminal) the keyboard at once.
Keys on a terminal: ``y``/``n`` answer a pending approval, a digit picks an
option of a pending question, typed text plus Enter is sent as a prompt,
Ctrl-C interrupts a running turn (or detaches when nothing runs), Ctrl-D
detaches. A dropped connection is reopened with capped backoff and the view
resubscribes ``since`` the last event it showed, so nothing is lost or shown
twice.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from transport.cli_client import Client, Live, Refused, Unreachable
from transport.cli_view import FINAL, EventView, dump_json
from transport.settings import ClientSettings

BUSY = ("running", "awaiting_approval", "awaiting_answer")
#: Decides, per frame, whether the view is done: None = go on, else the exit code.
StopWhen = Callable[[dict[str, Any], EventView], int | None]


@contextlib.contextmanager
def _keyboard(fd: int) -> Iterator[None]:
    """Keys one at a time, no echo, Ctrl-C as a byte (restored on the way out)."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # keep keys typed before the switch
        mode = termios.tcgetattr(fd)
        mode[3] &= ~termios.ISIG
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class LiveView:
    def __init__(
        self,
        client: Client,
        sid: str,
        settings: ClientSettings,
        out: TextIO = sys.stdout,
        json_mode: bool = False,
        stop_when: StopWhen | None = None,
    ) -> None:
        self._client = client
        self._sid = sid
        self._settings = settings
        self._json = json_mode
        self._out = out
        self.view = EventView(io.StringIO() if json_mode else out)
        self._stop_when = stop_when
        #: Requests whose refusal ends the view with exit 1 (the subscribe, ``then`` frames).
        self._critical: set[str | None] = set()
        self._first: list[dict[str, Any]] = []
        self._typed = ""
        self._answers: dict[str, str] = {}

    def then(self, frame: dict[str, Any]) -> None:
        """A frame to send right after the first subscribe (e.g. the prompt of ``send --wait``)."""
        self._first.append(frame)

    def run(
        self, since: int | None = None, history: bool = True, keys: bool = False, banner: str = ""
    ) -> int:
        """Follow the session until ``stop_when`` says so, the session ends, or the user detaches."""
        self._live = self._open(since)
        for frame in self._first:
            self._critical.add(self._live.send(frame, track=True))
        self._history = history
        use_keys = keys and sys.stdin.isatty()
        with _keyboard(sys.stdin.fileno()) if use_keys else contextlib.nullcontext():
            if banner:
                print(self.view.style.dim(banner), file=self._out, flush=True)
            try:
                while True:
                    try:
                        return self._loop(use_keys)
                    except KeyboardInterrupt:
                        code = self._ctrl_c(self._live, detach_code=130)
                        if code is not None:
                            return code
            finally:
                self.view.end_stream()
                self._live.close()

    def _open(self, since: int | None) -> Live:
        live = self._client.live()
        frame: dict[str, Any] = {"type": "subscribe", "sessionId": self._sid}
        if since is not None:
            frame["since"] = since
        self._critical.add(live.send(frame, track=True))
        return live

    def _loop(self, keys: bool) -> int:
        while True:
            live = self._live
            watched = [live.fileno(), *([sys.stdin.fileno()] if keys else [])]
            ready, _, _ = select.select(watched, [], [], 0.5)
            if keys and sys.stdin.fileno() in ready:
                code = self._keys(live, os.read(sys.stdin.fileno(), 1024).decode(errors="ignore"))
                if code is not None:
                    return code
            if live.fileno() not in ready:
                continue
            try:
                frame = live.recv(self._settings.request_timeout)
            except Unreachable:
                reopened = self._reconnect()
                if isinstance(reopened, int):
                    return reopened
                self._live = reopened
                continue
            if frame is None:
                continue
            code = self._frame(frame)
            if code is not None:
                return code

    def _frame(self, frame: dict[str, Any]) -> int | None:
        if frame.get("type") == "ack":
            return None
        if frame.get("type") == "protocol_error" and frame.get("requestId") in self._critical:
            raise Refused(str(frame.get("message")))
        if not self.view.fresh(frame):
            return None
        self._clear_typed()
        if self._json:
            dump_json(frame, self._out)
        self.view.show(frame, history=self._history)
        self._history = True
        self._draw_typed()
        if self._stop_when is not None:
            code = self._stop_when(frame, self.view)
            if code is not None:
                return code
        if self.view.status in FINAL:
            return 0
        return None

    def _reconnect(self) -> Live | int:
        self.view.end_stream()
        print(self.view.style.dim("· connection lost; reconnecting…"), file=sys.stderr, flush=True)
        deadline = time.monotonic() + self._settings.reconnect_give_up
        delay = 0.1
        while True:
            try:
                live = self._open(self.view.seq)
            except Unreachable as exc:
                if time.monotonic() > deadline:
                    print(f"berth: {exc}", file=sys.stderr)
                    return 3
                time.sleep(delay)  # backoff between attempts to reach a server that is down
                delay = min(delay * 2, self._settings.reconnect_delay_max)
                continue
            print(self.view.style.dim("· reconnected"), file=sys.stderr, flush=True)
            return live

    # ------------------------------------------------------------- keys

    def _keys(self, live: Live, text: str) -> int | None:
        for key in text:
            code = self._key(live, key)
            if code is not None:
                return code
        return None

    def _key(self, live: Live, key: str) -> int | None:
        view = self.view
        if key == "\x03":
            return self._ctrl_c(live, detach_code=0)
        if key == "\x04" and not self._typed:
            return 0
        if not self._typed and view.pending_approval is not None and key in "yn":
            approval = view.pending_approval
            live.send(
                {
                    "type": "approve_tool",
                    "sessionId": self._sid,
                    "approvalId": approval["id"],
                    "allow": key == "y",
                },
                track=True,
            )
            view.pending_approval = None
            print(view.style.dim("  allowed" if key == "y" else "  denied"), file=self._out, flush=True)
            return None
        if not self._typed and view.pending_question is not None and key.isdigit():
            self._pick(live, int(key))
            return None
        if key in "\r\n":
            if self._typed.strip():
                content, self._typed = self._typed, ""
                print(file=self._out, flush=True)
                live.send({"type": "send_prompt", "sessionId": self._sid, "content": content}, track=True)
            return None
        if key in "\x7f\b":
            self._clear_typed()
            self._typed = self._typed[:-1]
            self._draw_typed()
            return None
        if key.isprintable():
            self._clear_typed()
            self._typed += key
            self._draw_typed()
        return None

    def _pick(self, live: Live, number: int) -> None:
        question = self.view.pending_question
        assert question is not None
        open_items = [q for q in question["questions"] if q["question"] not in self._answers]
        options = open_items[0].get("options", []) if open_items else []
        if not 1 <= number <= len(options):
            return
        self._answers[open_items[0]["question"]] = options[number - 1]["label"]
        print(self.view.style.dim(f"  {options[number - 1]['label']}"), file=self._out, flush=True)
        if len(open_items) == 1:
            live.send(
                {
                    "type": "answer_question",
                    "sessionId": self._sid,
                    "questionId": question["id"],
                    "answers": self._answers,
                },
                track=True,
            )
            self.view.pending_question, self._answers = None, {}

    def _ctrl_c(self, live: Live, detach_code: int) -> int | None:
        if self.view.status in BUSY:
            print(self.view.style.dim("  interrupting…"), file=self._out, flush=True)
            live.send({"type": "interrupt", "sessionId": self._sid}, track=True)
            return None
        return detach_code

    def _clear_typed(self) -> None:
        if self._typed and self.view.style.tty:
            print("\r\x1b[K", end="", file=self._out, flush=True)

    def _draw_typed(self) -> None:
        if self._typed and not self.view.streaming:
            print(f"\r{self.view.style.bold('> ' + self._typed)}", end="", file=self._out, flush=True)
