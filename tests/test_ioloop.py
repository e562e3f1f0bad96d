"""The I/O loop's timers and cross-thread calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.waiting import wait_until
from transport.ioloop import IOLoop


@pytest.fixture
def loop() -> Iterator[IOLoop]:
    io = IOLoop()
    io.start()
    yield io
    io.stop()


def test_calls_from_many_threads_all_run_on_the_loop_thread_in_order_per_thread(loop):
    seen: list[tuple[int, int, bool]] = []

    def caller(n: int) -> None:
        for i in range(500):
            loop.call_soon(lambda n=n, i=i: seen.append((n, i, loop.in_loop())))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: len(seen) == 2000, what="every call")
    assert all(on_loop for _, _, on_loop in seen)
    for n in range(4):
        assert [i for m, i, _ in seen if m == n] == list(range(500))


def test_timers_fire_in_deadline_order_and_a_cancelled_one_never_fires(loop):
    fired: list[str] = []
    done = threading.Event()

    def arm() -> None:
        loop.call_later(0.06, lambda: fired.append("late"))
        loop.call_later(0.02, lambda: fired.append("early"))
        loop.call_later(0.04, lambda: fired.append("cancelled")).cancel()
        loop.call_later(0.08, done.set)

    loop.call_soon(arm)
    assert done.wait(5)
    assert fired == ["early", "late"]


def test_a_failing_call_does_not_stop_the_loop(loop):
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    loop.call_soon(boom)
    loop.call_soon(ran.set)
    assert ran.wait(5)
    assert loop.thread.is_alive()


def test_stop_ends_the_loop_thread():
    io = IOLoop()
    io.start()
    io.stop()
    assert not io.thread.is_alive()
