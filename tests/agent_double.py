"""Drive a session as its agent would, through actor messages.

The double is one agent process per session, as Berth's agent is: a link
attached again (after a drop or a server restart) says it has every numbered
frame the session's earlier links were sent (``X-Berth-Received``), so
nothing is resent to it that it already got.
"""

from __future__ import annotations

from actors.api import Berth
from actors.messages import AgentAttached, AgentDetached, FromAgent
from tests.fake_link import FakeLink
from transport.protocol import AgentToServer

#: Every link attached per session id (ids are unique across tests).
_links: dict[str, list[FakeLink]] = {}


def attach(berth: Berth, session_id: str, link: FakeLink | None = None) -> FakeLink:
    link = link or FakeLink()
    earlier = _links.setdefault(session_id, [])
    link.received = max((old.highest_number() for old in earlier), default=0)
    earlier.append(link)
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
