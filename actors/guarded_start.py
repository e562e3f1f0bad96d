"""A start-up that reports its own failure.

pykka does not call ``on_failure`` when ``on_start`` raises: the actor just
stops, and nobody hears of it. An actor whose death must be reported (every
child of the supervisor) inherits ``GuardedStart`` before
``pykka.ThreadingActor`` and puts its start-up in ``_begin``.
"""

from __future__ import annotations

import sys
from typing import Any


class GuardedStart:
    def _begin(self) -> None:
        """The actor's start-up."""

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Overridden by the actor: where it reports its death."""

    def on_start(self) -> None:
        try:
            self._begin()
        except Exception:
            self.on_failure(*sys.exc_info())
            raise
