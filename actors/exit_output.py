"""Why a session's container stopped, in its agent's own words.

"exited unexpectedly (exit code 0)" alone sends a user to ``docker logs``,
and by then the container has been removed. So the ContainerActor reads the
tail of a dead container's output, and the session's error quotes the lines
that say why: the agent's warnings and errors, and anything printed outside
its log format (a traceback's last line). Its info and debug records (which
include the CLI's stderr) are left out, and anything shaped like a token is
masked, so a secret that slipped into a log line does not reach the error.
"""

from __future__ import annotations

import re

#: At most this many lines are quoted, each cut to ``_LINE_CHARS``.
_QUOTED_LINES = 3
_LINE_CHARS = 240

#: The agent's log format: "<date> <time> <LEVEL> <logger>: <message>".
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<rest>.*)$")
_QUIET_LEVELS = frozenset({"DEBUG", "INFO"})
_SECRETS = (
    (re.compile(r"sk-ant-[A-Za-z0-9_-]+"), "sk-ant-***"),
    (re.compile(r"(?i)\b(bearer|token)([=: ]+)[A-Za-z0-9._~+/-]{12,}=*"), r"\1\2***"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "gh*_***"),
)


def why_it_stopped(output: str) -> str:
    """The quoted lines, joined with " | "; "" if none says anything."""
    said: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line or raw[0].isspace() or line.startswith("Traceback "):
            continue  # a traceback's frames: its last, unindented line says what happened
        record = _RECORD.match(line)
        if record is not None:
            if record.group("level") in _QUIET_LEVELS:
                continue
            line = f"{record.group('level')} {record.group('rest')}"
        said.append(_masked(line)[:_LINE_CHARS])
    return " | ".join(said[-_QUOTED_LINES:])


def _masked(line: str) -> str:
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line
