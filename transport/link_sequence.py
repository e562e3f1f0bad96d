"""The server's side of the agent link's numbering: which frames it already has.

Agent frames carry a link number ``n`` (1, 2, …). A reconnecting agent resends
everything the server had not acknowledged, so some frames arrive twice; the
session keeps the highest number it applied and drops anything at or below
it. The number is stored with the session (written behind, after the frame's
own effects), so after a restart the server's ``link_resume`` names exactly
what survived and the agent resends the rest. Pure: no I/O, one per session.
"""

from __future__ import annotations


class LinkSequence:
    def __init__(self, received: int = 0, epoch: str = "") -> None:
        #: The agent process the numbers belong to; another one starts again at 1.
        self.epoch = epoch
        self.received = received
        #: The acknowledgement in flight covers frames up to this (None: none in flight).
        self.ack_pending: int | None = None

    def attached(self, epoch: str) -> None:
        """An agent connected: a new process (another epoch) numbers its frames from 1."""
        if epoch != self.epoch:
            self.epoch, self.received, self.ack_pending = epoch, 0, None

    def accept(self, n: int) -> bool:
        """True for a frame to apply (new, or not numbered); False for a resend of one applied."""
        if n <= 0:
            return True
        if n <= self.received:
            return False
        self.received = n
        return True

    def ack_due(self) -> int | None:
        """The number to acknowledge next, once stored; None while one is in flight or all are."""
        if self.ack_pending is not None or self.received == 0:
            return None
        self.ack_pending = self.received
        return self.received

    def ack_sent(self) -> int | None:
        """The one in flight went out; the next number to acknowledge, if frames came meanwhile."""
        sent, self.ack_pending = self.ack_pending, None
        if sent is not None and self.received > sent:
            return self.ack_due()
        return None
