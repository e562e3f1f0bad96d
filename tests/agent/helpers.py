"""Shared test helpers: a recording RunnerHost and deadline-bound waits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.waiting import wait_until
from transport.protocol import AgentToServer

__all__ = ["RecordingHost", "run_async", "wait_until"]

F = TypeVar("F")


class RecordingHost:
    """A RunnerHost that keeps every frame and lets a test wait for one."""

    def __init__(self) -> None:
        self.frames: list[AgentToServer] = []
        self._cond = threading.Condition()

    def emit(self, frame: AgentToServer) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def snapshot(self) -> list[AgentToServer]:
        with self._cond:
            return list(self.frames)

    def of(self, kind: type[F]) -> list[F]:
        return [f for f in self.snapshot() if isinstance(f, kind)]

    def wait_for(
        self, kind: type[F], predicate: Callable[[F], bool] = lambda _: True, timeout: float = 5.0
    ) -> F:
        """The first frame of ``kind`` matching ``predicate``; fails after ``timeout``."""
        found: list[F] = []

        def match() -> bool:
            found[:] = [f for f in self.frames if isinstance(f, kind) and predicate(f)][:1]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(match, timeout):
                raise AssertionError(f"no {kind.__name__} frame within {timeout}s; got {self.frames!r}")
        return found[0]

    async def await_for(
        self, kind: type[F], predicate: Callable[[F], bool] = lambda _: True, timeout: float = 5.0
    ) -> F:
        """``wait_for`` from inside an event loop without blocking it."""
        return await asyncio.to_thread(self.wait_for, kind, predicate, timeout)


def run_async(coro: Any, timeout: float = 30.0) -> Any:
    """Run a test coroutine with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class RunnerHarness:
    """A runner serving a channel on the current loop, with a recording host.

    Used as ``async with RunnerHarness(runner) as h``; leaving the block
    closes the runner and checks that it stopped within ``close_bound``.
    """

    def __init__(self, runner: Any, close_bound: float = 10.0) -> None:
        from agent.channel import InputChannel

        self.runner = runner
        self.channel: InputChannel[Any] = InputChannel()
        self.host = RecordingHost()
        self.close_bound = close_bound
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunnerHarness:
        self.task = asyncio.create_task(self.runner.run(self.channel, self.host))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> float:
        """Close the runner; how long it took (fails beyond ``close_bound``)."""
        started = time.monotonic()
        await asyncio.wait_for(self.runner.close(), self.close_bound)
        assert self.task is not None
        done, _ = await asyncio.wait({self.task}, timeout=self.close_bound)
        assert done, "the runner did not stop after close()"
        return time.monotonic() - started

    def send(self, content: str) -> Any:
        from agent.runner import UserInput

        item = UserInput(content)
        self.channel.push(item)
        return item

    async def turn(self, item: Any, timeout: float = 5.0) -> Any:
        """The outcome of ``item``'s turn (raises what the turn failed with)."""
        return await asyncio.wait_for(asyncio.wrap_future(item.done), timeout)

    async def frame(
        self, kind: type[F], predicate: Callable[[F], bool] = lambda _: True, timeout: float = 5.0
    ) -> F:
        return await self.host.await_for(kind, predicate, timeout)
