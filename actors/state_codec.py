"""How a ``SessionState`` is written to the store and read back.

JSON, field by field: the three parts that are unions of dataclasses
(lifecycle, agent link, turn) carry their class name as ``kind``. Secrets are
never written: the OAuth ``token`` and the ``pushed`` record are left out (a
restarted session asks for a fresh token), and frames that carry a secret
(``token_update``, ``assign``) are dropped from the agent queue.

Timer deadlines are on the session's monotonic clock, which means nothing
after a restart; so each record also carries the (monotonic, wall) pair of
the moment it was encoded, and decoding turns every deadline into wall time.
The other monotonic times in a state (a manager's and a managed child's,
issue 11) are moved onto this process's clock as they are decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, get_type_hints

import msgspec

from actors.child_reports import rebased as managed_rebased
from actors.manager_state import rebased as manager_rebased
from actors.secret import Secret
from actors.session_state import (
    AwaitingAnswer,
    AwaitingApproval,
    Connected,
    Ended,
    Idle,
    Live,
    NoAgent,
    Reconnecting,
    Running,
    SessionState,
    Starting,
)
from transport.protocol import Assign, TokenUpdate

_UNIONS: dict[str, dict[str, type]] = {
    "lifecycle": {cls.__name__: cls for cls in (Starting, Live, Ended)},
    "link": {cls.__name__: cls for cls in (NoAgent, Connected, Reconnecting)},
    "turn": {cls.__name__: cls for cls in (Idle, Running, AwaitingApproval, AwaitingAnswer)},
}
_LEFT_OUT = frozenset({"token", "pushed"})
_HINTS = get_type_hints(SessionState)


@dataclass(frozen=True)
class DecodedState:
    state: SessionState
    #: Armed timers: name -> deadline in wall-clock seconds.
    wall_deadlines: Mapping[str, float]


def _enc_hook(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return dict(value)
    if isinstance(value, Secret):
        raise TypeError("a Secret reached the session store; it must be left out")
    raise NotImplementedError(f"the session store cannot encode {type(value).__name__}")


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, enc_hook=_enc_hook)


class SessionStateCodec:
    """What the ``SqliteStore`` needs to know about a session state."""

    def __init__(self, mono: Callable[[], float], wall: Callable[[], float]) -> None:
        self._mono = mono
        self._wall = wall
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)

    def session_id(self, state: SessionState) -> str:
        return state.session_id

    def is_ended(self, state: SessionState) -> bool:
        return state.final

    def is_deleted(self, state: SessionState) -> bool:
        return state.deleted

    def encode(self, state: SessionState) -> bytes:
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(state):
            if f.name in _LEFT_OUT:
                continue
            value = getattr(state, f.name)
            if f.name in _UNIONS:
                fields[f.name] = {"kind": type(value).__name__, **_builtins(value)}
            elif f.name == "agent_queue":
                fields[f.name] = [_builtins(fr) for fr in value if not isinstance(fr, TokenUpdate | Assign)]
            else:
                fields[f.name] = _builtins(value)
        record = {"state": fields, "clock": {"mono": self._mono(), "wall": self._wall()}}
        return self._encoder.encode(record)

    def decode(self, data: bytes) -> DecodedState:
        record = msgspec.json.decode(data)
        fields: dict[str, Any] = {}
        for name, value in record["state"].items():
            if name in _UNIONS:
                body = dict(value)
                cls = _UNIONS[name][body.pop("kind")]
                fields[name] = msgspec.convert(body, cls)
            elif name in _HINTS:
                fields[name] = msgspec.convert(value, _HINTS[name])
        fields["timers"] = MappingProxyType(dict(fields.get("timers", {})))
        if isinstance(fields.get("agent_queue"), list):
            fields["agent_queue"] = tuple(fields["agent_queue"])
        offset = record["clock"]["wall"] - record["clock"]["mono"]
        shift = offset - (self._wall() - self._mono())
        if fields.get("manager") is not None:
            fields["manager"] = manager_rebased(fields["manager"], shift)
        if fields.get("managed") is not None:
            fields["managed"] = managed_rebased(fields["managed"], shift)
        state = SessionState(**fields)
        wall = {name: deadline + offset for name, deadline in state.timers.items()}
        return DecodedState(state, MappingProxyType(wall))
