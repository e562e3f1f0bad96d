"""What the session store keeps, as its readers and writers see it.

A session's record (``StoredSession``), the digest that stands for its agent
token (never the token), and the codec that turns a state value into JSON
with every secret left out: a ``Secret`` reaching an encoder stops that write
with an error instead of being stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from actors.secret import Secret
from transport.protocol import ChatMessage, SessionEvent

T = TypeVar("T")


@dataclass(frozen=True)
class StoredSession:
    """One session as the last committed batch left it."""

    session_id: str
    #: The state as JSON, without its token.
    state: bytes
    #: SHA-256 (hex) of the session token, for verifying a reconnecting agent.
    token_digest: str | None
    ended_at: float | None
    updated_at: float
    #: Its latest events in ``seq`` order, with no gap: the journal's replay log.
    events: tuple[SessionEvent, ...]
    #: Every history message it recorded, oldest first (kept beyond the replay log).
    history: tuple[ChatMessage, ...] = ()
    #: The highest agent link number whose frame's effects are stored, and its agent process.
    link_received: int = 0
    link_epoch: str = ""

    def decode(self, state_type: type[T]) -> T:
        return msgspec.json.decode(self.state, type=state_type)


def token_digest(token: Secret) -> str:
    return hashlib.sha256(token.reveal().encode()).hexdigest()


def digest_matches(given: str | None, digest: str) -> bool:
    """Constant-time check of a presented token against a stored digest."""
    if given is None:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), digest)


class StateCodec(Protocol):
    """What the store needs to know about the state values it keeps."""

    def session_id(self, state: Any) -> str: ...

    def is_ended(self, state: Any) -> bool: ...

    def is_deleted(self, state: Any) -> bool: ...

    def encode(self, state: Any) -> bytes:
        """JSON without any secret; raises TypeError rather than write one."""
        ...


def enc_hook(value: Any) -> Any:
    if isinstance(value, Secret):
        raise TypeError("a Secret reached the session store; it must be stripped before saving")
    raise NotImplementedError(f"the session store cannot encode {type(value).__name__}")


class PlainCodec:
    """For any dataclass or Struct with ``session_id`` (and optional ``token``, ``ended``, ``deleted``)."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder(enc_hook=enc_hook)

    def session_id(self, state: Any) -> str:
        return str(state.session_id)

    def is_ended(self, state: Any) -> bool:
        return bool(getattr(state, "ended", False))

    def is_deleted(self, state: Any) -> bool:
        return bool(getattr(state, "deleted", False))

    def encode(self, state: Any) -> bytes:
        if getattr(state, "token", None) is not None:
            if dataclasses.is_dataclass(state) and not isinstance(state, type):
                state = dataclasses.replace(state, token=None)
            elif isinstance(state, msgspec.Struct):
                state = msgspec.structs.replace(state, token=None)
        return self._encoder.encode(state)
