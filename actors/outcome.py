"""The answer to a command an actor refused.

Commands are answered with ``None`` (done) or ``Rejected``; actors never raise
for bad input, since an exception in a told message would kill the actor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejected:
    reason: str
    #: The HTTP status that fits (400 bad input, 404 unknown, 409 wrong state, 429 limit).
    code: int = 409
