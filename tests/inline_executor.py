"""An executor that runs each job at once on the caller's thread.

Injected as the ContainerActor's worker pool in tests that settle the tree:
a container start then finishes inside the actor's own message, so no work
happens on a thread the settle barrier cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class InlineExecutor(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def inline_executor(workers: int) -> Executor:
    return InlineExecutor()
