"""Requests that wait for a person: tool approvals and questions.

Each request is a future keyed by id. Every wait has a deadline (an approval
nobody answers is denied after a while), and ``resolve_all`` settles them all
at once, which the runners do before closing: the SDK would otherwise wait on
an unanswered permission callback forever.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

V = TypeVar("V")


class PendingRequests(Generic[V]):
    """Futures keyed by request id, on the runner's event loop."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._futures

    def open(self, request_id: str) -> asyncio.Future[V]:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        return future

    async def wait(self, request_id: str, future: asyncio.Future[V], timeout: float, on_timeout: V) -> V:
        """The answer, or ``on_timeout`` after ``timeout`` seconds; always forgets the id."""
        # Not asyncio.wait_for: on 3.11 it swallows a cancellation that races
        # with the answer, and cancelling the waiter is how a turn is stopped.
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            return future.result() if done else on_timeout
        finally:
            self._futures.pop(request_id, None)

    def resolve(self, request_id: str, value: V) -> bool:
        """Answer one request; False if it is unknown or already settled."""
        future = self._futures.get(request_id)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def resolve_all(self, value: V) -> int:
        settled = 0
        for future in list(self._futures.values()):
            if not future.done():
                future.set_result(value)
                settled += 1
        return settled
