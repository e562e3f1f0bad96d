#!/usr/bin/env python3
"""A fake Claude Code CLI for the SDK runner's tests (the SDK's ``cli_path``).

It speaks the Claude Code CLI's NDJSON stream-json control protocol (the
one the claude-agent-sdk package drives) and flushes every line. What
it does for each prompt comes from a JSON script named by ``FAKE_CLAUDE_SCRIPT``:

    {"models": [{"value": ..., "displayName": ..., "description": ...}],
     "turns": {"<prompt>": [<step>, ...]},
     "ignore_eof": false}

A prompt with no entry gets ``[{"say": "You said: <prompt>"}]``. Steps:

- ``{"say": "text"}``: one assistant message, streamed word by word;
- ``{"tokens": ["a", "b"]}``: the same with explicit tokens;
- ``{"hang": ["a"]}``: stream these tokens, then wait until interrupted;
- ``{"tool": "Bash", "input": {...}}``: a tool use that asks ``can_use_tool``;
- ``{"ask": [{"question": ..., "header": ..., "options": [...], "multiSelect": false}]}``:
  an ``AskUserQuestion`` tool use;
- ``{"crash": 1}``: exit with that status mid-turn;
- ``{"retry": {"attempt": 1, "max_retries": 10, "retry_delay_ms": 500, "error_status": 529, "error": "…"}}``:
  a ``system/api_retry`` notice, as the CLI sends before retrying a failed request.

Like the real CLI, it refuses ``bypassPermissions`` unless started with
``--allow-dangerously-skip-permissions`` (or ``--dangerously-skip-permissions``).

With ``ignore_eof`` it keeps running after stdin closes (to test the kill).
Every event worth checking is appended as a JSON line to ``FAKE_CLAUDE_LOG``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import uuid
from collections import deque
from typing import Any

DEFAULT_MODELS = [
    {"value": "fake-model-1", "displayName": "Fake 1", "description": "The first fake"},
    {"value": "fake-model-2", "displayName": "Fake 2", "description": "The second fake"},
]
INTERRUPTED_TOOL = "The user doesn't want to proceed with this tool use."


def _arg(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


class Aborted(Exception):
    """The turn was interrupted; its error result has been written."""


class FakeClaude:
    def __init__(self, argv: list[str]) -> None:
        script_path = os.environ.get("FAKE_CLAUDE_SCRIPT")
        self.script: dict[str, Any] = {}
        if script_path:
            with open(script_path, encoding="utf-8") as f:
                self.script = json.load(f)
        self.partial = "--include-partial-messages" in argv
        self.model = _arg(argv, "--model", "fake-model-1")
        self.mode = _arg(argv, "--permission-mode", "default")
        bypass_flags = {"--allow-dangerously-skip-permissions", "--dangerously-skip-permissions"}
        self.may_bypass = bool(bypass_flags & set(argv))
        named = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.startswith("--") and "=" in a}
        self.resumed = named.get("--resume")
        self.session_id = self.resumed or named.get("--session-id") or str(uuid.uuid4())
        self.out_lock = threading.Lock()
        self.cond = threading.Condition()
        self.inbox: deque[str] = deque()
        self.eof = False
        self.busy = False
        self.interrupted = False
        self.permissions: dict[str, dict[str, Any] | None] = {}
        self.log(
            "start",
            argv=argv,
            model=self.model,
            mode=self.mode,
            oauth_token=os.environ.get("CLAUDE_CODE_OAUTH_TOKEN"),
            config_dir=os.environ.get("CLAUDE_CONFIG_DIR"),
            env_file=os.environ.get("CLAUDE_ENV_FILE"),
            cwd=os.getcwd(),
            session_id=self.session_id,
            resumed=self.resumed,
        )

    # ----------------------------------------------------------- plumbing

    def write(self, obj: dict[str, Any]) -> None:
        with self.out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def log(self, event: str, **fields: Any) -> None:
        path = os.environ.get("FAKE_CLAUDE_LOG")
        if path:
            with self.out_lock, open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"event": event, **fields}) + "\n")

    def respond(
        self, request_id: str, response: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        if error is not None:
            body: dict[str, Any] = {"subtype": "error", "request_id": request_id, "error": error}
        else:
            body = {"subtype": "success", "request_id": request_id, "response": response or {}}
        self.write({"type": "control_response", "response": body})

    # ------------------------------------------------------------- stdin

    def read_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip():
                self.handle(json.loads(line))
        with self.cond:
            self.eof = True
            self.cond.notify_all()
        self.log("eof")

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "user":
            content = message["message"]["content"]
            text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
            with self.cond:
                self.log("user", text=text, busy=self.busy)
                self.inbox.append(text)
                self.cond.notify_all()
        elif kind == "control_response":
            response = message["response"]
            with self.cond:
                if response.get("request_id") in self.permissions:
                    self.permissions[response["request_id"]] = response
                    self.cond.notify_all()
        elif kind == "control_request":
            self.control(message["request_id"], message["request"])

    def control(self, request_id: str, request: dict[str, Any]) -> None:
        subtype = request.get("subtype")
        self.log("control", subtype=subtype, request=request)
        if subtype == "initialize":
            models = self.script.get("models", DEFAULT_MODELS)
            self.respond(request_id, {"commands": [], "models": models, "account": {}, "pid": os.getpid()})
        elif subtype == "interrupt":
            with self.cond:
                if self.busy:
                    self.interrupted = True
                for pending_id, answer in self.permissions.items():
                    if answer is None:
                        self.write({"type": "control_cancel_request", "request_id": pending_id})
                        self.permissions[pending_id] = {"cancelled": True}
                self.cond.notify_all()
            self.respond(request_id, {"still_queued": []})
        elif subtype == "set_model":
            self.model = request.get("model") or "fake-model-1"
            self.respond(request_id, {"model": self.model})
        elif subtype == "set_permission_mode":
            mode = request.get("mode")
            if mode not in ("default", "acceptEdits", "bypassPermissions", "plan"):
                self.respond(request_id, error=f"unknown permission mode {mode}")
                return
            if mode == "bypassPermissions" and not self.may_bypass:
                self.respond(
                    request_id,
                    error="Cannot set permission mode to bypassPermissions because the session "
                    "was not launched with --dangerously-skip-permissions",
                )
                return
            self.mode = mode
            self.respond(request_id, {"mode": mode})
            self.write({"type": "system", "subtype": "status", "status": None, "permissionMode": mode})
        else:
            self.respond(request_id, error=f"unsupported control request {subtype}")

    # ------------------------------------------------------------- turns

    def serve(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.inbox or self.eof)
                if not self.inbox:
                    break
                prompt = self.inbox.popleft()
                self.busy, self.interrupted = True, False
            try:
                self.turn(prompt)
            except Aborted:
                pass
        if self.script.get("ignore_eof"):
            self.log("ignoring eof")
            threading.Event().wait()
        self.log("exit")

    def base(self) -> dict[str, Any]:
        return {"uuid": str(uuid.uuid4()), "session_id": self.session_id, "parent_tool_use_id": None}

    def turn(self, prompt: str) -> None:
        steps = self.script.get("turns", {}).get(prompt) or [{"say": f"You said: {prompt}"}]
        self.write(
            {
                "type": "system",
                "subtype": "init",
                **self.base(),
                "model": self.model,
                "cwd": os.getcwd(),
                "tools": [],
                "mcp_servers": [],
                "permissionMode": self.mode,
                "slash_commands": [],
                "apiKeySource": "none",
                "claude_code_version": "2.1.330",
            }
        )
        last = ""
        for step in steps:
            if "say" in step:
                last = self.message(re.findall(r"\S+\s*", step["say"]))
            elif "tokens" in step:
                last = self.message(step["tokens"])
            elif "hang" in step:
                last = self.message(step["hang"], hang=True)
            elif "tool" in step:
                self.tool(step["tool"], step.get("input", {}))
            elif "ask" in step:
                self.tool("AskUserQuestion", {"questions": step["ask"]})
            elif "retry" in step:
                self.write({"type": "system", "subtype": "api_retry", **self.base(), **step["retry"]})
            elif "crash" in step:
                self.log("crash", code=step["crash"])
                os._exit(int(step["crash"]))
        self.result(last)

    def stream(self, event: dict[str, Any]) -> None:
        if self.partial:
            self.write({"type": "stream_event", **self.base(), "event": event})

    def assistant(self, message_id: str, content: list[dict[str, Any]]) -> None:
        message = {"id": message_id, "type": "message", "role": "assistant", "model": self.model}
        self.write({"type": "assistant", **self.base(), "message": {**message, "content": content}})

    def message(self, tokens: list[str], hang: bool = False) -> str:
        message_id = f"msg_{uuid.uuid4().hex[:16]}"
        start = {"id": message_id, "type": "message", "role": "assistant", "model": self.model, "content": []}
        self.stream({"type": "message_start", "message": start})
        self.stream(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        )
        sent = ""
        for token in tokens:
            self.check_interrupt(message_id, sent)
            self.stream(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}}
            )
            sent += token
        if hang:
            self.log("hanging", message_id=message_id)
            with self.cond:
                self.cond.wait_for(lambda: self.interrupted or self.eof)
            self.check_interrupt(message_id, sent)
            self.abandon_if_eof()
        self.stream({"type": "content_block_stop", "index": 0})
        self.assistant(message_id, [{"type": "text", "text": sent}])
        self.stream(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}
        )
        self.stream({"type": "message_stop"})
        return sent

    def check_interrupt(self, message_id: str, sent: str) -> None:
        with self.cond:
            if not self.interrupted:
                return
        if sent:
            self.assistant(message_id, [{"type": "text", "text": sent}])
        self.user_text("[Request interrupted by user]")
        self.abort("aborted_streaming")

    def tool(self, name: str, tool_input: dict[str, Any]) -> None:
        tool_use_id = f"toolu_{uuid.uuid4().hex[:16]}"
        self.assistant(
            f"msg_{uuid.uuid4().hex[:16]}",
            [{"type": "tool_use", "id": tool_use_id, "name": name, "input": tool_input}],
        )
        if self.mode == "bypassPermissions" and name != "AskUserQuestion":
            self.tool_result(tool_use_id, f"{name} ran", False)
            return
        request_id = str(uuid.uuid4())
        with self.cond:
            self.permissions[request_id] = None
        request = {
            "subtype": "can_use_tool",
            "tool_name": name,
            "input": tool_input,
            "tool_use_id": tool_use_id,
        }
        self.write({"type": "control_request", "request_id": request_id, "request": request})
        with self.cond:
            self.cond.wait_for(lambda: self.permissions[request_id] is not None or self.eof)
            answer = self.permissions.pop(request_id) or {"eof": True}
        self.log("permission", tool=name, answer=answer)
        self.abandon_if_eof()
        if answer.get("cancelled") or answer.get("eof"):
            self.tool_result(tool_use_id, INTERRUPTED_TOOL, True)
            self.user_text("[Request interrupted by user for tool use]")
            self.abort("aborted_tools")
        decision = answer.get("response", {}) if answer.get("subtype") == "success" else {}
        if decision.get("behavior") == "allow":
            updated = decision.get("updatedInput", tool_input)
            content = (
                f"answers: {json.dumps(updated.get('answers'))}"
                if name == "AskUserQuestion"
                else f"{name} ran"
            )
            self.tool_result(tool_use_id, content, False)
            return
        self.tool_result(tool_use_id, decision.get("message") or answer.get("error") or "denied", True)
        if decision.get("interrupt"):
            self.abort("aborted_tools")

    def user_text(self, text: str) -> None:
        self.write(
            {
                "type": "user",
                **self.base(),
                "message": {"role": "user", "content": [{"type": "text", "text": text}]},
            }
        )

    def tool_result(self, tool_use_id: str, content: str, is_error: bool) -> None:
        block = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error}
        self.write({"type": "user", **self.base(), "message": {"role": "user", "content": [block]}})

    def result(self, text: str, error: str | None = None) -> None:
        with self.cond:
            self.busy = False
        usage = {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 1,
        }
        model_usage = {
            self.model: {"inputTokens": 10, "outputTokens": 5, "costUSD": 0.001, "contextWindow": 200000}
        }
        message: dict[str, Any] = {
            "type": "result",
            "subtype": "error_during_execution" if error else "success",
            "is_error": error is not None,
            "duration_ms": 12,
            "duration_api_ms": 1,
            "num_turns": 1,
            "session_id": self.session_id,
            "total_cost_usd": 0.001,
            "usage": usage,
            "modelUsage": model_usage,
            "permission_denials": [],
            "terminal_reason": error or "completed",
            "uuid": str(uuid.uuid4()),
        }
        if error:
            message["errors"] = [f"turn {error}"]
        else:
            message["result"] = text
        self.write(message)

    def abandon_if_eof(self) -> None:
        """Stdin is closed: nobody reads the rest of this turn."""
        with self.cond:
            if self.eof:
                raise Aborted

    def abort(self, reason: str) -> None:
        self.log("aborted", reason=reason)
        self.result("", error=reason)
        raise Aborted


if __name__ == "__main__":
    FakeClaude(sys.argv[1:]).serve()
