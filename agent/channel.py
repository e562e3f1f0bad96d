"""The input channel: user messages from the connection thread to the runner.

Rule 6 of the architecture: closing a channel ends every reader with the end
of the stream (never a ``None`` item), items pushed before the close are still
delivered, and pushing after the close is an error the caller sees. Readers
may be plain threads (``for item in channel``) or coroutines on any event loop
(``async for item in channel``); each item goes to exactly one reader.

Every push or close wakes every waiting reader, and each re-checks the queue
under the lock. With the one or two readers a session has, that costs nothing
and it means a cancelled async reader can never swallow a wake-up meant for
another one.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ChannelClosed(RuntimeError):
    """Raised by ``push`` after ``close``: the item would never be read."""


class ChannelEnded(Exception):
    """Raised by ``get``/``aget`` once the channel is closed and drained."""


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class InputChannel(Generic[T]):
    """A thread-safe, closable FIFO readable from threads and event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: deque[T] = deque()
        self._closed = False
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._sync_waiting = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting_readers(self) -> int:
        """How many readers are blocked waiting for an item right now."""
        with self._lock:
            return self._sync_waiting + len(self._async_waiters)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def push(self, item: T) -> None:
        """Queue ``item`` for one reader; raises ChannelClosed after close."""
        with self._lock:
            if self._closed:
                raise ChannelClosed("the input channel is closed")
            self._items.append(item)
            self._wake_all_locked()

    def close(self) -> None:
        """End the stream: readers drain what is queued, then see the end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake_all_locked()

    def _wake_all_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:
                pass  # that reader's loop is closed; nobody is waiting there any more

    def get(self, timeout: float | None = None) -> T:
        """Next item, blocking; ChannelEnded at the end, TimeoutError on timeout."""
        with self._cond:
            self._sync_waiting += 1
            try:
                ready = self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            finally:
                self._sync_waiting -= 1
            if not ready:
                raise TimeoutError("no item within the timeout")
            if self._items:
                return self._items.popleft()
            raise ChannelEnded

    async def aget(self) -> T:
        """Next item without blocking the event loop; ChannelEnded at the end."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise ChannelEnded
                future: asyncio.Future[None] = loop.create_future()
                entry = (loop, future)
                self._async_waiters.append(entry)
            try:
                await future
            finally:
                with self._lock:
                    if entry in self._async_waiters:
                        self._async_waiters.remove(entry)

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except ChannelEnded:
                return

    def __aiter__(self) -> AsyncIterator[T]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[T]:
        while True:
            try:
                item = await self.aget()
            except ChannelEnded:
                return
            yield item
