"""The session's frames to its agent: numbered, kept until acknowledged, resent.

A frame the server writes as the agent's socket drops is gone with the
socket, and TCP does not say which. So every data frame a session sends its
agent gets the next link number (``state.link_out``: 1, 2, … for the
session's life) and stays in ``state.unacked`` until the agent's
``link_ack`` covers it. An agent connecting says in its upgrade
(``X-Berth-Received``) the highest number it has; ``resend`` drops what that
covers and sends the rest again, in order, before anything new. The agent
drops a number it already has, so each frame is acted on exactly once.

What the agent has not acknowledged — sent and kept, or held while it is
away — is bounded in bytes (``rules.unacked_bytes``) and in frames
(``rules.agent_queue_limit``, ``agent_unacked_frames``): a command that would go over is refused with
503 and a reason, never dropped later. ``token_update`` is not numbered: every
connection is given the current token when it attaches, which supersedes a
lost one, and an old token resent would only be stale.

After a restart numbering jumps by ``RESTART_GAP``: the store writes behind,
so the last batch window's frames may have reached the agent with numbers the
store never saw, and a number must never be given twice. The unacked frames
that were stored keep theirs; the agent's ``X-Berth-Received`` sorts them out.

Pure rules on a ``_Step``, like ``actors.session_frames``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec.structs import replace as replace_struct

from actors import effects as fx
from actors.outcome import Rejected
from transport import protocol as p

if TYPE_CHECKING:
    from actors.session_core import _Step

#: How far numbering jumps after a restart: more frames than one store batch window can send.
RESTART_GAP = 1_000_000


def size_of(frame: p.ServerToAgent) -> int:
    """The bytes a frame counts against the budget (its encoding, unnumbered)."""
    if getattr(frame, "n", 0):
        frame = replace_struct(frame, n=0)
    return len(p.encode_bytes(frame))


def refusal(s: _Step, frame: p.ServerToAgent, size: int) -> Rejected | None:
    """Why ``frame`` (``size`` bytes) may not be taken on (the budget is spent), or None."""
    state, rules = s.s, s.s.rules
    if len(state.agent_queue) + len(state.unacked) >= rules.agent_queue_limit:
        return Rejected(
            f"the agent has {rules.agent_queue_limit} frames it has not acknowledged (it is unreachable "
            "or not reading; agent_unacked_frames): retry when it reconnects",
            503,
        )
    if state.unacked_size + size > rules.unacked_bytes:
        return Rejected(
            f"the agent has not acknowledged {state.unacked_size} bytes of frames and this one is {size}; "
            f"the limit is {rules.unacked_bytes} bytes (agent_unacked_bytes): retry once it catches up",
            503,
        )
    return None


def hold(s: _Step, frame: p.ServerToAgent, size: int) -> None:
    """Keep ``frame`` (``size_of`` it: ``size``) for an agent that is away or not ready yet
    (sent by ``send_held``)."""
    s.set(agent_queue=(*s.s.agent_queue, frame), unacked_size=s.s.unacked_size + size)


def send(s: _Step, link_id: str, frame: p.ServerToAgent, size: int | None = None) -> None:
    """Number ``frame``, keep it until acknowledged and send it on ``link_id``.

    ``size``: its ``size_of``, if known; 0 when its bytes are already in the budget (it was held)."""
    if not isinstance(frame, p.NumberedToAgent):
        s.emit(fx.SendToAgent(link_id, frame))
        return
    n = s.s.link_out + 1
    numbered = replace_struct(frame, n=n)
    total = s.s.unacked_size + (size_of(frame) if size is None else size)
    s.set(link_out=n, unacked=(*s.s.unacked, numbered), unacked_size=total)
    s.emit(fx.SendToAgent(link_id, numbered))


def send_held(s: _Step, link_id: str) -> None:
    """Send the held frames, in order, numbering each."""
    held = s.s.agent_queue
    s.set(agent_queue=())
    for frame in held:
        send(s, link_id, frame, size=0)


def acked(s: _Step, received: int) -> None:
    """The agent has every frame up to ``received``: forget them."""
    unacked = s.s.unacked
    if not unacked or unacked[0].n > received:
        return
    keep = tuple(f for f in unacked if f.n > received)
    freed = sum(size_of(f) for f in unacked[: len(unacked) - len(keep)])
    s.set(unacked=keep, unacked_size=max(0, s.s.unacked_size - freed))


def resend(s: _Step, link_id: str, received: int) -> None:
    """An agent connected having frames up to ``received``: send it the rest, in order."""
    acked(s, received)
    for frame in s.s.unacked:
        s.emit(fx.SendToAgent(link_id, frame))


def forget_all(s: _Step) -> None:
    """The session ended: nothing more is owed to its agent."""
    s.set(agent_queue=(), unacked=(), unacked_size=0)


def restarted(s: _Step) -> None:
    """Loaded from the store after a restart: never reuse a number (see the module doc)."""
    s.set(link_out=s.s.link_out + RESTART_GAP)
