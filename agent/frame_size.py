"""Frames the server would refuse for their size are cut to fit, never lost.

The server closes an agent connection whose message is over its limit
(``BerthConfig.max_agent_frame_bytes``, given to the container as
``BERTH_MAX_FRAME_BYTES``); the frame would be gone and the agent would
reconnect. A tool result or a turn's text can be that big (a file read
whole), so the agent cuts the long text of such a frame and says so in it:
the history keeps the message, shortened, and the user sees that it was.
Token streams never come near the limit (the outbox batches them in 64 KiB).
"""

from __future__ import annotations

import logging

import msgspec

from transport.protocol import (
    AgentError,
    AgentToServer,
    ApprovalRequest,
    Result,
    SdkMessage,
    SetupProgress,
    encode_bytes,
)

log = logging.getLogger(__name__)

#: The server's default limit (``BerthConfig.max_agent_frame_bytes``).
DEFAULT_LIMIT = 8 * 1024 * 1024
#: What stands in for a tool input too big to send.
CUT_INPUT = {"cut": "the tool input was too big to send"}
#: Kinds that can carry a large text; others are small by construction.
_LARGE = (SdkMessage, Result, ApprovalRequest, SetupProgress, AgentError)


def cut(text: str, keep: int) -> str:
    return f"{text[:keep]}\n… [cut by the agent: {len(text) - keep} more characters did not fit in a frame]"


def fit(frame: AgentToServer, limit: int = DEFAULT_LIMIT) -> AgentToServer:
    """``frame`` if it fits in ``limit`` bytes, else a copy with its long text cut."""
    if not isinstance(frame, _LARGE):
        return frame
    size = len(encode_bytes(frame))
    if size <= limit:
        return frame
    # Escaping can make a character 6 bytes; aim well under the limit.
    budget = max(1, limit // 8)
    log.warning("cutting a %s frame of %d bytes to fit the server's %d", type(frame).__name__, size, limit)
    match frame:
        case SdkMessage(message=message):
            fitted = msgspec.structs.replace(
                message,
                content=cut(message.content, budget),
                tool_input=CUT_INPUT if message.tool_input else None,
            )
            return msgspec.structs.replace(frame, message=fitted)
        case Result(result=result) if result is not None:
            return msgspec.structs.replace(frame, result=cut(result, budget))
        case ApprovalRequest(approval=approval):
            small = msgspec.structs.replace(approval, tool_input=CUT_INPUT)
            return msgspec.structs.replace(frame, approval=small)
        case SetupProgress(message=text) | AgentError(message=text):
            return msgspec.structs.replace(frame, message=cut(text, budget))
    return frame
