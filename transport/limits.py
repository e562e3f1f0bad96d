"""Every bound on input from clients and agents, in one place.

The values are ``BerthConfig`` fields (``actors/config.py``), so an operator
or a test changes them there and nowhere else; ``docs/protocol.md`` lists
them in its "Limits" section. The transport applies them at the edge, before
any work is done: a REST body or a WebSocket message over its byte limit is
never read whole, and an over-long field is refused with a message naming the
field and its limit before it reaches a session.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.config import BerthConfig


@dataclass(frozen=True)
class Limits:
    request_bytes: int
    client_frame_bytes: int
    agent_frame_bytes: int
    name_chars: int
    model_chars: int
    repo_url_chars: int
    branch_chars: int
    prompt_chars: int
    answer_chars: int
    answers: int
    id_chars: int
    reason_chars: int
    agent_frame_rate: float
    agent_frame_burst: int
    agent_byte_rate: float
    agent_byte_burst: int
    agent_mailbox_backlog: int
    agent_backlog_poll: float

    @classmethod
    def from_config(cls, config: BerthConfig) -> Limits:
        return cls(
            request_bytes=config.max_request_bytes,
            client_frame_bytes=config.max_client_frame_bytes,
            agent_frame_bytes=config.max_agent_frame_bytes,
            name_chars=config.max_name_chars,
            model_chars=config.max_model_chars,
            repo_url_chars=config.max_repo_url_chars,
            branch_chars=config.max_branch_chars,
            prompt_chars=config.max_prompt_chars,
            answer_chars=config.max_answer_chars,
            answers=config.max_answers,
            id_chars=config.max_id_chars,
            reason_chars=config.max_reason_chars,
            agent_frame_rate=config.agent_frame_rate,
            agent_frame_burst=config.agent_frame_burst,
            agent_byte_rate=config.agent_byte_rate,
            agent_byte_burst=config.agent_byte_burst,
            agent_mailbox_backlog=config.agent_mailbox_backlog,
            agent_backlog_poll=config.agent_backlog_poll,
        )


class InputRefused(ValueError):
    """A field or body broke a limit or an enumeration; the message names it."""


def check_text(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise InputRefused(f"{field} is {len(value)} characters long; the limit is {limit}")


def check_choice(field: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InputRefused(f"{field} {shown(value)} is not one of: {', '.join(choices)}")


def too_large(what: str, limit: int) -> str:
    return f"{what} is larger than {limit} bytes, the limit; send less"


def shown(value: str, width: int = 40) -> str:
    """A user's value quoted in an error, cut short: errors never echo a megabyte."""
    if len(value) <= width:
        return repr(value)
    return repr(value[:width]) + f"… ({len(value)} characters)"


#: Characters of an error message; a longer one (it quotes what was sent) is cut in the middle.
MAX_ERROR_CHARS = 1000


def bounded_message(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` cut in the middle when long: its start names the problem, its end the fix."""
    if len(message) <= limit:
        return message
    head, tail = limit * 6 // 10, limit * 3 // 10
    return f"{message[:head]}… ({len(message) - head - tail} characters cut) …{message[-tail:]}"
