"""Drive a session as its agent would, through actor messages."""

from __future__ import annotations

from actors.api import Berth
from actors.messages import AgentAttached, AgentDetached, FromAgent
from tests.fake_link import FakeLink
from transport.protocol import AgentToServer


def attach(berth: Berth, session_id: str, link: FakeLink | None = None) -> FakeLink:
    link = link or FakeLink()
    ref = berth.lookup(session_id).ref
    assert ref is not None
    ref.tell(AgentAttached(link))
    return link


def say(berth: Berth, session_id: str, link: FakeLink, *frames: AgentToServer) -> None:
    ref = berth.lookup(session_id).ref
    assert ref is not None
    for frame in frames:
        ref.tell(FromAgent(link.link_id, frame))


def detach(berth: Berth, session_id: str, link: FakeLink, reason: str = "connection lost") -> None:
    ref = berth.lookup(session_id).ref
    assert ref is not None
    ref.tell(AgentDetached(link.link_id, reason))
